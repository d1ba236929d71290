// The unfused attention path the fused kernel is measured against (webgpu-bench.ts and attention-ab.ts), on
// head-major inputs prepared outside the timing: queries [Hkv, Tq·g, D] with the scale folded in, keys and values
// [Hkv, S, D]. Each call first copies K and V (as a real prefill writes them fresh), then scores [Hkv, Tq·g, S]
// → softmax → · V. `ops` is passed in because attention-ab.ts times other builds' op modules.

import type { Tensor } from '../../core/tensor.js';

type Ops = typeof import('../../ops/index.js');

export function unfusedAttentionFreshKV(ops: Ops, qh: Tensor, kh: Tensor, vh: Tensor): () => Tensor {
  return () => {
    const k2 = ops.copy(kh), v2 = ops.copy(vh);
    const s = ops.matmul(qh, k2, { transposeB: true });
    const p = ops.softmax(s);
    const o = ops.matmul(p, v2);
    for (const t of [k2, v2, s, p]) t.dispose();
    return o;
  };
}
