// CPU reference matmul. Plain loops in an order that streams memory (so 1024³ takes seconds, not minutes):
//  - b stored [N, K] (transposeB, Linear weights): each output is a dot product of two contiguous rows;
//  - b stored [K, N]: the i-k-j order adds a·b_row into the output row, contiguous in both.
// Packed f16/bf16 weight rows are widened one row at a time, so a packed weight is never copied whole.

import type { MatmulAttrs } from '../../core/backend.js';
import { f16ToF32 } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';

/** Copies row `r` (length len, starting at element offset) of b into `dst` as f32. */
function loadRow(b: Tensor, offset: number, len: number, dst: Float32Array): Float32Array {
  const s = b.storage;
  if (b.dtype === 'f32') return (s as Float32Array).subarray(offset, offset + len);
  const bits = s as Uint16Array;
  if (b.dtype === 'bf16') {
    // bf16 is the top half of an f32: widening is a 16-bit shift of the bit pattern.
    const u = new Uint32Array(dst.buffer, dst.byteOffset, len);
    for (let i = 0; i < len; i++) u[i] = bits[offset + i]! << 16;
    return dst;
  }
  for (let i = 0; i < len; i++) dst[i] = f16ToF32(bits[offset + i]!);
  return dst;
}

export function matmul(out: Tensor, [a, b, bias]: [Tensor, Tensor, Tensor | null], { transposeB }: MatmulAttrs): void {
  const A = a.storage as Float32Array;
  const O = out.storage as Float32Array;
  const biasV = bias ? (bias.storage as Float32Array) : null;
  const M = a.shape[a.rank - 2]!;
  const K = a.shape[a.rank - 1]!;
  const N = out.shape[out.rank - 1]!;
  const batches = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  const bShared = b.rank === 2;
  const rowScratch = new Float32Array(transposeB ? K : N);
  const acc = new Float64Array(N);

  for (let bt = 0; bt < batches; bt++) {
    const aOff = bt * M * K;
    const bOff = bShared ? 0 : bt * K * N;
    const oOff = bt * M * N;
    if (transposeB) {
      for (let n = 0; n < N; n++) {
        const row = loadRow(b, bOff + n * K, K, rowScratch);
        const bn = biasV ? biasV[n]! : 0;
        for (let m = 0; m < M; m++) {
          const ai = aOff + m * K;
          let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          let k = 0;
          for (; k + 4 <= K; k += 4) {
            s0 += A[ai + k]! * row[k]!;
            s1 += A[ai + k + 1]! * row[k + 1]!;
            s2 += A[ai + k + 2]! * row[k + 2]!;
            s3 += A[ai + k + 3]! * row[k + 3]!;
          }
          for (; k < K; k++) s0 += A[ai + k]! * row[k]!;
          O[oOff + m * N + n] = s0 + s1 + (s2 + s3) + bn;
        }
      }
    } else {
      for (let m = 0; m < M; m++) {
        acc.fill(0);
        for (let k = 0; k < K; k++) {
          const av = A[aOff + m * K + k]!;
          const row = loadRow(b, bOff + k * N, N, rowScratch);
          for (let n = 0; n < N; n++) acc[n] += av * row[n]!;
        }
        for (let n = 0; n < N; n++) O[oOff + m * N + n] = acc[n]! + (biasV ? biasV[n]! : 0);
      }
    }
  }
}
