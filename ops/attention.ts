// Fused multi-head attention (grouped-query, causal or full, with a KV-cache offset).

import { broadcastShapes, sameShape } from '../core/shape.js';
import { ShapeError, ValueError, fmtShape } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { F32, FLOAT_STORAGE, requireDType, requireFinite, requireInt, requireRank } from './check.js';
import { runKernel, tensorBytes } from './dispatch.js';
import { transpose } from './layout.js';

export interface AttentionOptions {
  causal?: boolean;
  /** Absolute position of the first query (tokens already in the cache). Default 0. */
  queryOffset?: number;
  /** Number of valid keys in k/v (a cache may be allocated larger). Default: all. */
  keyLength?: number;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** Additive f32 mask broadcastable to [B, Hq, Tq, keyLength]. */
  mask?: Tensor | null;
  /** k [B, Hkv, S, D] and v [B, Hkv, S, Dv] (head-major) instead of token-major. Backends without `headMajorKV` get
   *  token-major copies (a transpose per call): store K/V head-major only where the backend reads it natively. */
  kvHeadMajor?: boolean;
}

/** q [B, Tq, Hq, D], k [B, S, Hkv, D], v [B, S, Hkv, Dv] (or [B, Hkv, S, ·] with kvHeadMajor) → [B, Tq, Hq, Dv]. k and v may be stored f16/bf16 (both the
 *  same dtype; read as their f32 values, e.g. LaVi's packed K/U); q, mask and the output are f32. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const op = 'attention';
  // Unrolled (no per-call array of pairs): attention runs three times per decoder layer and token.
  requireDType(op, 'q', q, F32), requireRank(op, 'q', q, 4);
  requireDType(op, 'k', k, FLOAT_STORAGE), requireRank(op, 'k', k, 4);
  requireDType(op, 'v', v, FLOAT_STORAGE), requireRank(op, 'v', v, 4);
  if (k.dtype !== v.dtype) throw new ValueError(`${op}: k is ${k.dtype} but v is ${v.dtype}: keys and values must share a dtype`);
  const qs = q.shape, ks = k.shape, vs = v.shape;
  const B = qs[0]!, Tq = qs[1]!, Hq = qs[2]!, D = qs[3]!;
  const hm = opts.kvHeadMajor ?? false;
  if (typeof hm !== 'boolean') throw new ValueError(`${op}: kvHeadMajor must be true or false, got ${JSON.stringify(hm)}`);
  const Bk = ks[0]!, S = ks[hm ? 2 : 1]!, Hkv = ks[hm ? 1 : 2]!, Dk = ks[3]!;
  const Bv = vs[0]!, Sv = vs[hm ? 2 : 1]!, Hv = vs[hm ? 1 : 2]!, Dv = vs[3]!;
  if (Bk !== B || Bv !== B) throw new ShapeError(`${op}: batch sizes differ: q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}`);
  if (Dk !== D) throw new ShapeError(`${op}: q head dim ${D} ≠ k head dim ${Dk} (q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)})`);
  if (Sv !== S || Hv !== Hkv) throw new ShapeError(`${op}: k ${fmtShape(k.shape)} and v ${fmtShape(v.shape)} disagree in keys or heads`);
  if (Hkv === 0 || Hq % Hkv !== 0) throw new ShapeError(`${op}: query heads ${Hq} must be a multiple of kv heads ${Hkv}`);
  const causal = opts.causal ?? false;
  const queryOffset = opts.queryOffset ?? 0;
  const keyLength = opts.keyLength ?? S;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  requireInt(op, 'queryOffset', queryOffset, 0);
  requireInt(op, 'keyLength', keyLength, 0, S);
  requireFinite(op, 'scale', scale);
  if (causal && queryOffset + Tq > keyLength) {
    throw new ValueError(`${op}: causal queries reach position ${queryOffset + Tq - 1} but only ${keyLength} keys are valid`);
  }
  const mask = opts.mask ?? null;
  if (mask) {
    requireDType(op, 'mask', mask, F32);
    const full = [B, Hq, Tq, keyLength];
    if (!sameShape(broadcastShapes(full, mask.shape, op), full)) throw new ShapeError(`${op}: mask ${fmtShape(mask.shape)} must broadcast to ${fmtShape(full)}`);
  }
  // Visible (query, key) pairs: all of them, or the causal triangle shifted by the offset.
  let pairs = Tq * keyLength;
  if (causal) {
    pairs = 0;
    for (let t = 0; t < Tq; t++) pairs += Math.min(keyLength, queryOffset + t + 1);
  }
  const flops = B * Hq * pairs * (2 * D + 2 * Dv + 5);
  const kvRead = (tensorBytes(k) + tensorBytes(v)) * (S ? keyLength / S : 0);
  const cost = { flops, bytesRead: tensorBytes(q) + kvRead + tensorBytes(mask) };
  if (hm && !k.backend.headMajorKV) {
    // Token-major copies for a backend whose kernels do not read head-major K/V.
    const kt = transpose(k, [0, 2, 1, 3]), vt = transpose(v, [0, 2, 1, 3]);
    try {
      return runKernel(op, [B, Tq, Hq, Dv], 'f32', [q, kt, vt, mask], { causal, queryOffset, keyLength, scale, kvHeadMajor: false }, cost);
    } finally {
      kt.dispose();
      vt.dispose();
    }
  }
  return runKernel(op, [B, Tq, Hq, Dv], 'f32', [q, k, v, mask], { causal, queryOffset, keyLength, scale, kvHeadMajor: hm }, cost);
}
