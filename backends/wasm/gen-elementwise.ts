// Generated elementwise kernels: activations, scale, SwiGLU, broadcasting binary ops, and the f16/bf16 → f32
// widening used by cast and embedding. All are f32x4 loops; the last n mod 4 elements go through the very same
// vector code on a splatted scalar, so every element gets bit-identical results whichever thread or position
// handles it.

import { f32, f32x4, i32, type Expr, type FnBuilder, type ModuleBuilder, v128 } from './emitter.js';
import { ELEM_BYTES, load1, load4, type StoreDType } from './gen-gemm.js';
import { vexp, vgeluErf, vgeluTanh, vsilu, vtanh } from './gen-math.js';

type VecFn = (f: FnBuilder, xs: Expr[], params: Expr[]) => Expr;

/**
 * map_<name>(out, in_0 … in_{k−1}, n, params…): out[i] = fn(in_0[i], …) for i < n. Params are f32 scalars.
 */
function genMap(m: ModuleBuilder, name: string, inputs: number, params: number, fn: VecFn): string {
  const sig = ['i32', ...Array(inputs).fill('i32'), 'i32', ...Array(params).fill('f32')] as ('i32' | 'f32')[];
  m.func(name, sig, [], (f, out, ...rest) => {
    const ins = rest.slice(0, inputs);
    const n = rest[inputs]!;
    const ps = rest.slice(inputs + 1);
    const psv = ps.map((p) => f.local('v128', f32x4.splat(p)));
    const i = f.local('i32');
    const n4 = f.local('i32', i32.and(n, -4));
    f.for(i, 0, n4, 4, () => {
      const off = i32.shl(i, 2);
      const r = fn(f, ins.map((p) => v128.load(i32.add(p, off), 0, 0)), psv);
      f.v128_store(i32.add(out, off), r, 0, 0);
    });
    f.for(i, n4, n, 1, () => {
      const off = i32.shl(i, 2);
      const r = fn(f, ins.map((p) => f32x4.splat(f32.load(i32.add(p, off)))), psv);
      f.f32_store(i32.add(out, off), f32x4.extract_lane(r, 0));
    });
  });
  return name;
}

export const UNARY_FNS: Record<string, VecFn> = {
  gelu_tanh: (f, [x]) => vgeluTanh(f, x!),
  gelu_erf: (f, [x]) => vgeluErf(f, x!),
  silu: (f, [x]) => vsilu(f, x!),
  relu: (_f, [x]) => f32x4.pmax(x!, v128.zero()),
  tanh: (f, [x]) => vtanh(f, x!),
  exp: (f, [x]) => vexp(f, x!),
  neg: (_f, [x]) => f32x4.neg(x!),
  sqrt: (_f, [x]) => f32x4.sqrt(x!),
  rsqrt: (_f, [x]) => f32x4.div(v128.constF32(1, 1, 1, 1), f32x4.sqrt(x!)),
};

const BINARY_FNS = {
  add: f32x4.add,
  sub: f32x4.sub,
  mul: f32x4.mul,
  div: f32x4.div,
} as const;

export function genElementwise(m: ModuleBuilder): void {
  for (const [op, fn] of Object.entries(UNARY_FNS)) genMap(m, `unary_${op}`, 1, 0, fn);
  genMap(m, 'scale', 1, 2, (_f, [x], [s, b]) => f32x4.add(f32x4.mul(x!, s!), b!));
  genMap(m, 'swiglu', 2, 0, (f, [g, u]) => f32x4.mul(vsilu(f, g!), u!));
  for (const [op, fn] of Object.entries(BINARY_FNS)) genBinaryRows(m, op, fn);
  for (const dt of ['bf16', 'f16'] as const) genWiden(m, dt);
}

/**
 * binary_<op>(out, a, b, inner, rows, table): for each row r < rows, out[r·inner + j] = a[ao + j·sa] ∘ b[bo + j·sb]
 * for j < inner, where table holds (ao, bo, sa | sb << 1) per row as i32 element offsets and stride flags
 * (a stride is 1 or 0, i.e. broadcast). Row r of out is contiguous.
 */
function genBinaryRows(m: ModuleBuilder, op: string, fn: (a: Expr, b: Expr) => Expr): void {
  m.func(`binary_${op}`, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f, out, a, b, inner, rows, table) => {
    const r = f.local('i32'), j = f.local('i32'), flags = f.local('i32');
    const ap = f.local('i32'), bp = f.local('i32'), op_ = f.local('i32');
    const av = f.local('v128'), bv = f.local('v128');
    const n4 = f.local('i32', i32.and(inner, -4));
    f.for(r, 0, rows, 1, () => {
      const t = i32.add(table, i32.mul(r, 12));
      f.set(ap, i32.add(a, i32.shl(i32.load(t, 0), 2)));
      f.set(bp, i32.add(b, i32.shl(i32.load(t, 4), 2)));
      f.set(flags, i32.load(t, 8));
      f.set(op_, i32.add(out, i32.shl(i32.mul(r, inner), 2)));
      const loop = (aVec: boolean, bVec: boolean) => {
        if (!aVec) f.set(av, f32x4.splat(f32.load(ap)));
        if (!bVec) f.set(bv, f32x4.splat(f32.load(bp)));
        f.for(j, 0, n4, 4, () => {
          const off = i32.shl(j, 2);
          const x = aVec ? v128.load(i32.add(ap, off), 0, 0) : av;
          const y = bVec ? v128.load(i32.add(bp, off), 0, 0) : bv;
          f.v128_store(i32.add(op_, off), fn(x, y), 0, 0);
        });
        f.for(j, n4, inner, 1, () => {
          const off = i32.shl(j, 2);
          const x = aVec ? f32x4.splat(f32.load(i32.add(ap, off))) : av;
          const y = bVec ? f32x4.splat(f32.load(i32.add(bp, off))) : bv;
          f.f32_store(i32.add(op_, off), f32x4.extract_lane(fn(x, y), 0));
        });
      };
      f.if(
        i32.eq(flags, 3),
        () => loop(true, true),
        () =>
          f.if(
            i32.eq(flags, 1),
            () => loop(true, false),
            () => f.if(i32.eq(flags, 2), () => loop(false, true), () => loop(false, false)),
          ),
      );
    });
  });
}

/** widen_<dt>(src, dst, n): packed 16-bit floats → f32. */
function genWiden(m: ModuleBuilder, dt: StoreDType): void {
  const eb = ELEM_BYTES[dt];
  m.func(`widen_${dt}`, ['i32', 'i32', 'i32'], [], (f, src, dst, n) => {
    const i = f.local('i32');
    const n4 = f.local('i32', i32.and(n, -4));
    f.for(i, 0, n4, 4, () => f.v128_store(i32.add(dst, i32.shl(i, 2)), load4(f, i32.add(src, i32.mul(i, eb)), dt), 0, 0));
    f.for(i, n4, n, 1, () => f.f32_store(i32.add(dst, i32.shl(i, 2)), load1(f, i32.add(src, i32.mul(i, eb)), dt)));
  });
}
