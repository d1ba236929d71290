// Generated GEMM kernels: packing routines and the register-blocked macro/micro kernel.
//
// Layout (BLIS-style): C[m, n] += Σ_k A[m, k] · B[k, n] is computed in blocks of KC along k. For each block the
// caller packs
//   - B into panels of NR columns: for every k, NR consecutive floats (zero-padded past N), and
//   - A into panels of MR rows:    for every k, MR consecutive floats (zero-padded past M),
// so the micro-kernel reads both with one pointer each and constant offsets. The micro-kernel keeps an MR×NR tile
// of C in MR·NR/4 f32x4 accumulators; per k it loads NR/4 vectors of B, broadcasts MR values of A
// (v128.load32_splat) and does MR·NR/4 multiply-adds: f32x4.mul + f32x4.add in plain SIMD128, or one
// f32x4.relaxed_madd (an FMA instruction) where relaxed SIMD is available. x64 V8 has 15 usable xmm registers and
// hoists every load of an iteration to its top, so MR·NR/4 accumulators + NR/4 + MR loaded values (+1 temporary
// without FMA) must stay ≤ 15 or the loop spills: 4×8 fits exactly. V8 unrolls the k loop by itself.
//
// Packed f16/bf16 weights are widened while packing B, so the micro-kernel only ever sees f32.

import { f32, f32x4, i16x8, i32, i32x4, select, type Expr, type FnBuilder, type Local, type ModuleBuilder, v128 } from './emitter.js';

export type StoreDType = 'f32' | 'bf16' | 'f16';
export const DTYPE_CODE: Record<StoreDType, number> = { f32: 0, bf16: 1, f16: 2 };

// ---- widening helpers (shared with the GEMV and embedding kernels) ----
// Helpers that need a value more than once take the FnBuilder and keep it in a local (an Expr used twice would be
// emitted, and executed, twice). They emit those local.sets immediately, so use their result in the same block.

/**
 * IEEE half → single, exactly, for all inputs: shift the exponent+mantissa into place and scale by 2^112 (which
 * also normalises subnormals, since WASM keeps f32 subnormals), force Inf/NaN exponents to all-ones, add the sign.
 * `h` holds the 16-bit patterns zero-extended in i32 lanes.
 */
export function f16BitsToF32x4(f: FnBuilder, h: Expr): Expr {
  const hv = f.local('v128', h);
  const abs = f.local('v128', v128.and(hv, v128.constI32(0x7fff, 0x7fff, 0x7fff, 0x7fff)));
  const shifted = f.local('v128', i32x4.shl(abs, 13));
  const scaled = f32x4.mul(shifted, v128.constF32(2 ** 112, 2 ** 112, 2 ** 112, 2 ** 112));
  const isSpecial = i32x4.gt_s(abs, v128.constI32(0x7bff, 0x7bff, 0x7bff, 0x7bff)); // exponent 31: Inf/NaN
  const special = v128.or(shifted, v128.constI32(0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000));
  const mag = v128.bitselect(special, scaled, isSpecial);
  return v128.or(mag, i32x4.shl(v128.xor(hv, abs), 16));
}

/**
 * Half → single for the common case, then the exact conversion only if a lane is Inf/NaN. `raw` holds 16-bit
 * patterns in i16 lanes; `lanes` says which four to convert (0 = low, 1 = high). Fast path: (h << 16) >>s 3
 * puts the exponent/mantissa at bit 13 and smears the sign over bits 28–31; masking bits 28–30 and multiplying by
 * 2^112 gives the value (subnormals included, sign kept by the multiply).
 */
export function f16x8ToF32x4(f: FnBuilder, raw: Local, special: Local, lanes: 0 | 1): Local {
  const out = f.local('v128');
  const unpack = lanes === 0 ? [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23] : [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31];
  f.if(
    special,
    () => f.set(out, f16BitsToF32x4(f, lanes === 0 ? i32x4.extend_low_i16x8_u(raw) : i32x4.extend_high_i16x8_u(raw))),
    () => {
      const hi = i32x4.shr_s(v128.shuffle(v128.zero(), raw, unpack), 3);
      f.set(out, f32x4.mul(v128.and(hi, v128.constI32(0x8fffffff | 0, 0x8fffffff | 0, 0x8fffffff | 0, 0x8fffffff | 0)), v128.constF32(2 ** 112, 2 ** 112, 2 ** 112, 2 ** 112)));
    },
  );
  return out;
}

/** i32 flag: does any of the eight halves in `raw` have the Inf/NaN exponent? */
export function f16AnySpecial(raw: Expr): Expr {
  const e = v128.constI32(0x7c007c00, 0x7c007c00, 0x7c007c00, 0x7c007c00);
  return v128.any_true(i16x8.eq(v128.and(raw, e), e));
}

/** One bf16/f16 value at `addr` → f32 (scalar). */
export function load16AsF32(f: FnBuilder, addr: Expr, dtype: 'bf16' | 'f16', offset = 0): Expr {
  const bits = i32.load16_u(addr, offset);
  if (dtype === 'bf16') return f32.reinterpret_i32(i32.shl(bits, 16));
  return f32x4.extract_lane(f16BitsToF32x4(f, i32x4.splat(bits)), 0);
}

/** Four consecutive elements of `dtype` at `addr` as f32x4 (unaligned). */
export function load4(f: FnBuilder, addr: Expr, dtype: StoreDType, offset = 0): Expr {
  if (dtype === 'f32') return v128.load(addr, offset, 0);
  if (dtype === 'bf16') return v128.shuffle(v128.zero(), v128.load64_zero(addr, offset, 0), [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23]);
  const raw = f.local('v128', v128.load64_zero(addr, offset, 0));
  return f16x8ToF32x4(f, raw, f.local('i32', f16AnySpecial(raw)), 0);
}

/** One element of `dtype` at `addr` as f32. */
export function load1(f: FnBuilder, addr: Expr, dtype: StoreDType, offset = 0): Expr {
  return dtype === 'f32' ? f32.load(addr, offset, 0) : load16AsF32(f, addr, dtype, offset);
}

export const ELEM_BYTES: Record<StoreDType, number> = { f32: 4, bf16: 2, f16: 2 };

// ---- 4×4 transpose (used by the packers) ----

/** Transposes four rows r0..r3 (f32x4 each) into four columns, via two rounds of interleaves. */
export function transpose4(f: FnBuilder, r: [Local, Local, Local, Local], t: [Local, Local, Local, Local]): void {
  f.set(t[0], v128.shuffle32(r[0], r[1], [0, 4, 1, 5])); // a0 b0 a1 b1
  f.set(t[1], v128.shuffle32(r[0], r[1], [2, 6, 3, 7])); // a2 b2 a3 b3
  f.set(t[2], v128.shuffle32(r[2], r[3], [0, 4, 1, 5])); // c0 d0 c1 d1
  f.set(t[3], v128.shuffle32(r[2], r[3], [2, 6, 3, 7])); // c2 d2 c3 d3
  f.set(r[0], v128.shuffle32(t[0], t[2], [0, 1, 4, 5])); // a0 b0 c0 d0
  f.set(r[1], v128.shuffle32(t[0], t[2], [2, 3, 6, 7])); // a1 b1 c1 d1
  f.set(r[2], v128.shuffle32(t[1], t[3], [0, 1, 4, 5]));
  f.set(r[3], v128.shuffle32(t[1], t[3], [2, 3, 6, 7]));
}

// ---- packing ----

/**
 * pack_rows_<dtype>_<P>(src, ld, rows, kc, dst): packs `rows` rows (row stride `ld` elements) of `kc` elements
 * each into panels of P rows: dst[panel][k][P], zero-padding the last panel. Used for A (always f32, P = MR) and
 * for B stored [N, K] (transposed; P = NR).
 */
export function genPackRows(m: ModuleBuilder, dtype: StoreDType, P: number): string {
  const name = `pack_rows_${dtype}_${P}`;
  const eb = ELEM_BYTES[dtype];
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32'], [], (f, src, ld, rows, kc, dst) => {
    const ldb = f.local('i32', i32.mul(ld, eb));
    const p = f.local('i32'), k = f.local('i32'), r = f.local('i32');
    const rowPtr = f.local('i32'), out = f.local('i32'), nr = f.local('i32');
    const rr = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')] as [Local, Local, Local, Local];
    const tt = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')] as [Local, Local, Local, Local];
    const kc4 = f.local('i32', i32.and(kc, -4));
    const panelBytes = f.local('i32', i32.mul(kc, P * 4));
    f.for(p, 0, rows, P, () => {
      f.set(out, i32.add(dst, i32.mul(i32.div_s(p, P), panelBytes)));
      f.set(nr, i32.sub(rows, p));
      f.if(
        i32.ge_s(nr, P),
        () => {
          // Full panel: 4×4 transposes of groups of four rows.
          for (let q = 0; q < P / 4; q++) {
            f.set(rowPtr, i32.add(src, i32.mul(i32.add(p, q * 4), ldb)));
            f.for(k, 0, kc4, 4, () => {
              for (let j = 0; j < 4; j++) f.set(rr[j]!, load4(f, i32.add(rowPtr, i32.mul(ldb, j)), dtype));
              transpose4(f, rr, tt);
              const o = i32.add(out, i32.add(i32.mul(k, P * 4), q * 16));
              for (let j = 0; j < 4; j++) f.v128_store(o, rr[j]!, j * P * 4, 2);
              f.inc(rowPtr, 4 * eb);
            });
            f.for(k, kc4, kc, 1, () => {
              for (let j = 0; j < 4; j++) {
                f.f32_store(i32.add(out, i32.add(i32.mul(k, P * 4), (q * 4 + j) * 4)), load1(f, i32.add(rowPtr, i32.mul(ldb, j)), dtype));
              }
              f.inc(rowPtr, eb);
            });
          }
        },
        () => {
          // Partial panel: scalar, zero-padded.
          f.for(k, 0, kc, 1, () => {
            f.for(r, 0, P, 1, () => {
              const o = i32.add(out, i32.shl(i32.add(i32.mul(k, P), r), 2));
              f.if(
                i32.lt_s(r, nr),
                () => f.f32_store(o, load1(f, i32.add(src, i32.add(i32.mul(i32.add(p, r), ldb), i32.mul(k, eb))), dtype)),
                () => f.f32_store(o, 0),
              );
            });
          });
        },
      );
    });
  });
  return name;
}

/**
 * pack_cols_<dtype>_<NR>(src, ld, cols, kc, dst): packs a kc×cols block of B stored [K, N] (row stride `ld`
 * elements) into panels of NR columns: dst[panel][k][NR], zero-padded.
 */
export function genPackCols(m: ModuleBuilder, dtype: StoreDType, NR: number): string {
  const name = `pack_cols_${dtype}_${NR}`;
  const eb = ELEM_BYTES[dtype];
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32'], [], (f, src, ld, cols, kc, dst) => {
    const ldb = f.local('i32', i32.mul(ld, eb));
    const j = f.local('i32'), k = f.local('i32'), c = f.local('i32');
    const s = f.local('i32'), o = f.local('i32'), nc = f.local('i32');
    f.for(j, 0, cols, NR, () => {
      f.set(s, i32.add(src, i32.mul(j, eb)));
      f.set(o, i32.add(dst, i32.mul(j, i32.mul(kc, 4))));
      f.set(nc, i32.sub(cols, j));
      f.if(
        i32.ge_s(nc, NR),
        () => {
          f.for(k, 0, kc, 1, () => {
            for (let q = 0; q < NR / 4; q++) f.v128_store(o, load4(f, s, dtype, q * 4 * eb), q * 16, 2);
            f.inc(s, ldb);
            f.inc(o, NR * 4);
          });
        },
        () => {
          f.for(k, 0, kc, 1, () => {
            f.for(c, 0, NR, 1, () => {
              const dst = i32.add(o, i32.shl(c, 2));
              f.if(i32.lt_s(c, nc), () => f.f32_store(dst, load1(f, i32.add(s, i32.mul(c, eb)), dtype)), () => f.f32_store(dst, 0));
            });
            f.inc(s, ldb);
            f.inc(o, NR * 4);
          });
        },
      );
    });
  });
  return name;
}

// ---- macro kernel ----

/**
 * gemm_macro_<MR>x<NR>(pa, pb, kc, mc, nc, c, ldc, mode, bias, tile):
 *   for each NR panel of packed B and each MR panel of packed A, runs the micro-kernel over kc and writes the
 *   tile into C (row stride ldc elements):
 *     mode 0: C = acc, 1: C += acc, 2: C = acc + bias[n] (bias indexed from this block's first column).
 *   Edge tiles (fewer than MR rows or NR columns left) go through `tile` (MR·NR floats of scratch).
 */
export function genGemmMacro(m: ModuleBuilder, MR: number, NR: number, unroll: number, fma = false, ptrLoop = false): string {
  const name = `gemm_macro_${MR}x${NR}${fma ? '_fma' : ''}${ptrLoop ? '_p' : ''}`;
  const NV = NR / 4;
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, pa, pb, kc, mc, nc, c, ldc, mode, bias, tile) => {
    const ldcb = f.local('i32', i32.shl(ldc, 2));
    const jr = f.local('i32'), ir = f.local('i32'), k = f.local('i32');
    const a = f.local('i32'), b = f.local('i32'), cp = f.local('i32'), dst = f.local('i32'), dld = f.local('i32');
    const mrem = f.local('i32'), nrem = f.local('i32'), r = f.local('i32'), q = f.local('i32');
    const bpanel = f.local('i32'), bEnd = f.local('i32');
    const acc: Local[][] = [];
    for (let i = 0; i < MR; i++) acc.push(Array.from({ length: NV }, () => f.local('v128')));
    const bv = Array.from({ length: NV }, () => f.local('v128'));
    const av = f.local('v128');
    const kcu = f.local('i32', i32.and(kc, -unroll));
    const bPanelBytes = f.local('i32', i32.mul(kc, NR * 4));

    const step = (aOff: number, bOff: number) => {
      for (let v = 0; v < NV; v++) f.set(bv[v]!, v128.load(b, bOff + v * 16));
      for (let i = 0; i < MR; i++) {
        f.set(av, v128.load32_splat(a, aOff + i * 4));
        for (let v = 0; v < NV; v++) f.set(acc[i]![v]!, fma ? f32x4.relaxed_madd(av, bv[v]!, acc[i]![v]!) : f32x4.add(acc[i]![v]!, f32x4.mul(av, bv[v]!)));
      }
    };

    f.set(bpanel, pb);
    f.for(jr, 0, nc, NR, () => {
      f.set(a, pa);
      f.for(ir, 0, mc, MR, () => {
        for (const row of acc) for (const x of row) f.set(x, v128.zero());
        f.set(b, bpanel);
        f.set(k, 0);
        if (ptrLoop) {
          // The k loop ends on B's pointer (kc ≥ 1): no counter to bump and compare, two fewer instructions per
          // k step in a loop whose front end is nearly full (16 FMAs among 42 instructions per V8-unrolled pair).
          f.set(bEnd, i32.add(bpanel, bPanelBytes));
          f.loop(() => {
            step(0, 0);
            f.inc(a, MR * 4);
            f.inc(b, NR * 4);
            f.brIf(0, i32.lt_u(b, bEnd));
          });
        } else f.if(i32.lt_s(k, kcu), () => {
          f.loop(() => {
            for (let u = 0; u < unroll; u++) step(u * MR * 4, u * NR * 4);
            f.inc(a, unroll * MR * 4);
            f.inc(b, unroll * NR * 4);
            f.inc(k, unroll);
            f.brIf(0, i32.lt_s(k, kcu));
          });
        });
        if (!ptrLoop) f.if(i32.lt_s(k, kc), () => {
          f.loop(() => {
            step(0, 0);
            f.inc(a, MR * 4);
            f.inc(b, NR * 4);
            f.inc(k, 1);
            f.brIf(0, i32.lt_s(k, kc));
          });
        });
        // Where the tile goes: straight into C, or into the scratch tile for an edge.
        f.set(mrem, i32.sub(mc, ir));
        f.set(nrem, i32.sub(nc, jr));
        f.set(cp, i32.add(c, i32.add(i32.mul(ir, ldcb), i32.shl(jr, 2))));
        const full = i32.and(i32.ge_s(mrem, MR), i32.ge_s(nrem, NR));
        f.if(
          full,
          () => {
            f.set(dst, cp);
            f.set(dld, ldcb);
          },
          () => {
            f.set(dst, tile);
            f.set(dld, NR * 4);
          },
        );
        const edge = i32.eqz(full);
        const writeTile = (combine: (old: (i: number, v: number) => Expr, i: number, v: number) => Expr, plainIntoTile: boolean) => {
          // For edge tiles the combination is done when copying out, so the tile always gets plain acc.
          for (let i = 0; i < MR; i++) {
            for (let v = 0; v < NV; v++) {
              const addr = i32.add(dst, i32.mul(dld, i));
              const val = plainIntoTile ? acc[i]![v]! : combine((ii, vv) => v128.load(i32.add(dst, i32.mul(dld, ii)), vv * 16), i, v);
              f.v128_store(addr, val, v * 16);
            }
          }
        };
        f.if(
          edge,
          () => writeTile(() => v128.zero(), true),
          () => {
            f.if(
              i32.eq(mode, 1),
              () => writeTile((old, i, v) => f32x4.add(old(i, v), acc[i]![v]!), false),
              () => {
                f.if(
                  i32.eq(mode, 2),
                  () => writeTile((_old, i, v) => f32x4.add(acc[i]![v]!, v128.load(i32.add(bias, i32.shl(jr, 2)), v * 16, 2)), false),
                  () => writeTile((_old, i, v) => acc[i]![v]!, false),
                );
              },
            );
          },
        );
        // Edge tile: copy the valid part out of the scratch tile.
        f.if(edge, () => {
          f.for(r, 0, i32.min_s(mrem, MR), 1, () => {
            f.for(q, 0, i32.min_s(nrem, NR), 1, () => {
              const from = f32.load(i32.add(tile, i32.shl(i32.add(i32.mul(r, NR), q), 2)));
              const to = i32.add(cp, i32.add(i32.mul(r, ldcb), i32.shl(q, 2)));
              f.if(
                i32.eq(mode, 1),
                () => f.f32_store(to, f32.add(f32.load(to), from)),
                () => {
                  f.if(
                    i32.eq(mode, 2),
                    () => f.f32_store(to, f32.add(from, f32.load(i32.add(bias, i32.shl(i32.add(jr, q), 2))))),
                    () => f.f32_store(to, from),
                  );
                },
              );
            });
          });
        });
        // Next A panel (a already advanced by kc·MR floats).
      });
      f.inc(bpanel, bPanelBytes);
    });
  });
  return name;
}

// ---- the per-thread driver ----

export interface GemmBlocking {
  MR: number;
  NR: number;
  MC: number;
  KC: number;
  NC: number;
}

/** Scratch bytes one thread needs for `gemm`: packed A block, packed B block, edge tile. */
export function gemmScratchBytes(b: GemmBlocking): number {
  return b.MC * b.KC * 4 + b.KC * b.NC * 4 + b.MR * b.NR * 4 + 256;
}

/**
 * gemm(a, lda, b, ldb, bTrans, bDtype, c, ldc, bias, M, N, K, scratch):
 *   C[M, N] (row stride ldc) = A[M, K] (row stride lda, f32) · B (+ bias[N] when bias ≠ 0), where B is [K, N]
 *   (row stride ldb) or, when bTrans, [N, K] (row stride ldb); bDtype 0 f32, 1 bf16, 2 f16. K must be ≥ 1.
 *   One thread's share of a matmul: the caller passes pointers already offset to its block of rows/columns.
 * Loop order jc (NC columns) → pc (KC depth; pack B) → ic (MC rows; pack A) → macro kernel.
 */
export function genGemmDriver(m: ModuleBuilder, blk: GemmBlocking, macro: string, packA: string, packB: Record<'n' | 't', Record<StoreDType, string>>, name = 'gemm'): string {
  const { MR, NR, MC, KC, NC } = blk;
  const macroIdx = m.indexOf(macro);
  const packAIdx = m.indexOf(packA);
  m.func(name, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, a, lda, b, ldb, bTrans, bDtype, c, ldc, bias, M, N, K, scratch) => {
    const pA = f.local('i32', scratch);
    const pB = f.local('i32', i32.add(scratch, MC * KC * 4));
    const tile = f.local('i32', i32.add(pB, KC * NC * 4));
    const jc = f.local('i32'), pc = f.local('i32'), ic = f.local('i32');
    const nc = f.local('i32'), kc = f.local('i32'), mc = f.local('i32'), mode = f.local('i32');
    const eb = f.local('i32', select(4, 2, i32.eqz(bDtype)));
    f.for(jc, 0, N, NC, () => {
      f.set(nc, i32.min_s(NC, i32.sub(N, jc)));
      f.for(pc, 0, K, KC, () => {
        f.set(kc, i32.min_s(KC, i32.sub(K, pc)));
        // Pack B[pc : pc+kc, jc : jc+nc] (widening packed weights).
        const dtypes: StoreDType[] = ['f32', 'bf16', 'f16'];
        f.if(
          bTrans,
          () => {
            const src = i32.add(b, i32.mul(i32.add(i32.mul(jc, ldb), pc), eb));
            for (const dt of dtypes) f.if(i32.eq(bDtype, DTYPE_CODE[dt]), () => f.call(m.indexOf(packB.t[dt]), [src, ldb, nc, kc, pB]));
          },
          () => {
            const src = i32.add(b, i32.mul(i32.add(i32.mul(pc, ldb), jc), eb));
            for (const dt of dtypes) f.if(i32.eq(bDtype, DTYPE_CODE[dt]), () => f.call(m.indexOf(packB.n[dt]), [src, ldb, nc, kc, pB]));
          },
        );
        f.set(mode, select(select(2, 0, i32.ne(bias, 0)), 1, i32.eqz(pc)));
        f.for(ic, 0, M, MC, () => {
          f.set(mc, i32.min_s(MC, i32.sub(M, ic)));
          f.call(packAIdx, [i32.add(a, i32.shl(i32.add(i32.mul(ic, lda), pc), 2)), lda, mc, kc, pA]);
          f.call(macroIdx, [
            pA, pB, kc, mc, nc,
            i32.add(c, i32.shl(i32.add(i32.mul(ic, ldc), jc), 2)), ldc, mode,
            i32.add(bias, i32.shl(jc, 2)), tile,
          ]);
        });
      });
    });
  });
  return name;
}
