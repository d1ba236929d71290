// CPU reference attention: for each (batch, query head, query) compute all visible scores, softmax them
// (max-subtracted, float64), and take the weighted sum of values. Grouped-query: query head h reads kv head
// h / (Hq / Hkv). This is the definition every fused GPU/WASM kernel is checked against.

import type { AttentionAttrs } from '../../core/backend.js';
import { broadcastStrides } from '../../core/shape.js';
import type { Tensor } from '../../core/tensor.js';
import { widenToF32 } from '../../core/dtype.js';
import { softmaxRow } from './softmax.js';

export function attention(out: Tensor, [q, k, v, mask]: [Tensor, Tensor, Tensor, Tensor | null], attrs: AttentionAttrs): void {
  const { causal, queryOffset, keyLength, scale, kvHeadMajor } = attrs;
  // k/v stored f16/bf16 are read as their f32 values.
  const f32 = (t: Tensor) => (t.dtype === 'f32' ? (t.storage as Float32Array) : widenToF32(t.storage as Uint16Array, t.dtype as 'f16' | 'bf16'));
  const Q = q.storage as Float32Array, K = f32(k), V = f32(v);
  const O = out.storage as Float32Array;
  const [B, Tq, Hq, D] = q.shape as [number, number, number, number];
  const S = k.shape[kvHeadMajor ? 2 : 1]!, Hkv = k.shape[kvHeadMajor ? 1 : 2]!;
  // Element offset of key/value row j of kv head kh in batch b, for either layout.
  const row = kvHeadMajor ? (b: number, j: number, kh: number) => (b * Hkv + kh) * S + j : (b: number, j: number, kh: number) => (b * S + j) * Hkv + kh;
  const Dv = v.shape[3]!;
  const group = Hq / Hkv;
  const M = mask ? (mask.storage as Float32Array) : null;
  const ms = mask ? broadcastStrides(mask.shape, [B, Hq, Tq, keyLength]) : [0, 0, 0, 0];
  const scores = new Float64Array(keyLength);
  const acc = new Float64Array(Dv);

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / group);
      for (let t = 0; t < Tq; t++) {
        const visible = causal ? Math.min(keyLength, queryOffset + t + 1) : keyLength;
        const qOff = ((b * Tq + t) * Hq + h) * D;
        for (let j = 0; j < visible; j++) {
          const kOff = row(b, j, kh) * D;
          let dot = 0;
          for (let i = 0; i < D; i++) dot += Q[qOff + i]! * K[kOff + i]!;
          scores[j] = dot * scale + (M ? M[b * ms[0]! + h * ms[1]! + t * ms[2]! + j * ms[3]!]! : 0);
        }
        softmaxRow(scores, visible);
        acc.fill(0);
        for (let j = 0; j < visible; j++) {
          const p = scores[j]!;
          const vOff = row(b, j, kh) * Dv;
          for (let i = 0; i < Dv; i++) acc[i] += p * V[vOff + i]!;
        }
        const oOff = ((b * Tq + t) * Hq + h) * Dv;
        for (let i = 0; i < Dv; i++) O[oOff + i] = acc[i]!;
      }
    }
  }
}
