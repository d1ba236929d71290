// Source-text helpers for the gpu.js kernels.
//
// Every kernel of this backend is the source of a plain JavaScript function (`function (x, y) { ... }`) that
// gpu.js transpiles per mode (WGSL, WebAssembly, JS, GLSL). The sources are generated per shape: sizes, strides
// and loop bounds are baked in as literals, so each (op, shape) pair is one gpu.js kernel, compiled on its first
// call and cached. The helpers here emit the recurring pieces of those sources.
//
// gpu.js computes every local in f32 (loop counters are the only integers), so index arithmetic is exact only
// below 2^24; the backend refuses larger tensors (see MAX_ELEMENTS). Integer division is done with a corrected
// float division (`divmod`) so that a division that is not correctly rounded (WGSL allows 2.5 ulp) still gives
// the exact quotient.

/** Largest element count whose flat indices are exact in f32. */
export const MAX_ELEMENTS = 2 ** 24;

/** A numeric literal gpu.js reads as a float (integers get a trailing `.0`). */
export function lit(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`lit: ${x} cannot be a kernel literal`);
  if (Number.isInteger(x) && Math.abs(x) < 1e21) return `${x}.0`;
  return String(x);
}

/** Emits source lines; `v(name)` makes a kernel-unique variable name. */
export class Src {
  private readonly lines: string[] = [];
  private n = 0;
  v(stem: string): string {
    return `${stem}_${this.n++}`;
  }
  line(s: string): this {
    this.lines.push(s);
    return this;
  }
  /** The function source: `function (args) { body }`. */
  fn(args: readonly string[]): string {
    return `function (${args.join(', ')}) {\n  ${this.lines.join('\n  ')}\n}`;
  }
}

/**
 * q = ⌊i / n⌋, r = i − q·n for a non-negative integer-valued `i` and integer n ≥ 1. The float quotient of
 * (i + 0.5) / n sits at least 0.5/n away from an integer, and the remainder check fixes an off-by-one from a
 * division that is not correctly rounded.
 */
export function divmod(s: Src, i: string, n: number, q: string, r: string): void {
  if (n === 1) {
    s.line(`let ${q} = ${i};`).line(`let ${r} = 0.0;`);
    return;
  }
  const N = lit(n);
  s.line(`let ${q} = Math.floor((${i} + 0.5) / ${N});`);
  s.line(`let ${r} = ${i} - ${q} * ${N};`);
  s.line(`if (${r} < 0.0) { ${q} = ${q} - 1.0; ${r} = ${r} + ${N}; }`);
  s.line(`if (${r} >= ${N}) { ${q} = ${q} + 1.0; ${r} = ${r} - ${N}; }`);
}

/** Row-major coordinates of flat index `i` in `dims`; returns one variable name per dim (outermost first). */
export function decompose(s: Src, i: string, dims: readonly number[]): string[] {
  const out = new Array<string>(dims.length);
  let rest = i;
  for (let d = dims.length - 1; d >= 1; d--) {
    const q = s.v('q'), r = s.v('c');
    divmod(s, rest, dims[d]!, q, r);
    out[d] = r;
    rest = q;
  }
  if (dims.length > 0) out[0] = rest;
  return out;
}

/** Σ coords[d] · strides[d] as an expression (terms with stride 0 dropped). */
export function dot(coords: readonly string[], strides: readonly number[], base = 0): string {
  const terms: string[] = [];
  if (base) terms.push(lit(base));
  coords.forEach((c, d) => {
    const st = strides[d]!;
    if (st === 1) terms.push(c);
    else if (st !== 0) terms.push(`${c} * ${lit(st)}`);
  });
  return terms.length ? terms.join(' + ') : '0.0';
}

/** Merges adjacent dims that are contiguous for every stride set (fewer divisions per element). */
export function collapse(dims: readonly number[], strideSets: readonly (readonly number[])[]): { dims: number[]; strides: number[][] } {
  const outDims: number[] = [];
  const outStrides: number[][] = strideSets.map(() => []);
  for (let d = 0; d < dims.length; d++) {
    const size = dims[d]!;
    if (size === 1) continue; // a size-1 dim contributes nothing to any index
    const last = outDims.length - 1;
    const mergeable = last >= 0 && strideSets.every((st, k) => outStrides[k]![last] === st[d]! * size);
    if (mergeable) {
      outDims[last]! *= size;
      strideSets.forEach((st, k) => (outStrides[k]![last] = st[d]!));
    } else {
      outDims.push(size);
      strideSets.forEach((st, k) => outStrides[k]!.push(st[d]!));
    }
  }
  return { dims: outDims, strides: outStrides };
}

/** Exact 2^k for an integer-valued k in [-126, 127] by binary exponentiation with exact power-of-two factors
 *  (Math.pow is not exact on every backend: WGSL's pow is exp2(y·log2 x) with a few ulp of error). */
export function pow2(s: Src, k: string, out: string): void {
  const rem = s.v('pk');
  s.line(`let ${out} = 1.0;`);
  s.line(`let ${rem} = ${k};`);
  s.line(`if (${rem} >= 0.0) {`);
  for (const b of [64, 32, 16, 8, 4, 2, 1]) {
    s.line(`  if (${rem} >= ${lit(b)}) { ${out} = ${out} * ${lit(2 ** b)}; ${rem} = ${rem} - ${lit(b)}; }`);
  }
  s.line(`} else {`);
  s.line(`  ${rem} = -${rem};`);
  for (const b of [64, 32, 16, 8, 4, 2, 1]) {
    s.line(`  if (${rem} >= ${lit(b)}) { ${out} = ${out} * ${lit(2 ** -b)}; ${rem} = ${rem} - ${lit(b)}; }`);
  }
  s.line(`}`);
}

// ---- packed 16-bit floats -----------------------------------------------------------------------------------
// gpu.js is f32-only and has no bitcast, so a 16-bit pattern cannot share an f32 word with another one portably
// (the word could be a NaN pattern, which loads may canonicalise, or a subnormal, which GPUs flush). This backend
// therefore stores each f16/bf16 element as the f32 *value* of its 16-bit pattern (0 … 65535, exact) and widens
// or narrows it arithmetically inside the kernel that reads or writes it.

/** Emits `out` = the f32 value of the packed pattern `h` (an expression holding 0 … 65535). `sp` names a kernel
 *  argument holding [+Inf, NaN] (needed only for the all-ones exponent). */
export function decode16(s: Src, dtype: 'f16' | 'bf16', h: string, out: string, sp: string): void {
  const hv = s.v('h'), sg = s.v('sg'), e = s.v('e'), m = s.v('m'), p = s.v('p');
  const [mantBits, expMax] = dtype === 'bf16' ? [128, 255] : [1024, 31];
  s.line(`let ${hv} = ${h};`);
  s.line(`let ${sg} = 1.0;`);
  s.line(`if (${hv} >= 32768.0) { ${sg} = -1.0; ${hv} = ${hv} - 32768.0; }`);
  s.line(`let ${e} = Math.floor((${hv} + 0.5) / ${lit(mantBits)});`);
  s.line(`let ${m} = ${hv} - ${e} * ${lit(mantBits)};`);
  if (dtype === 'bf16') {
    // normal: (128 + m) · 2^(e − 134); subnormal (e = 0): m · 2^(−133) = (m · 2^−7) · 2^−126
    pow2(s, `(${e} > 0.0 ? ${e} - 127.0 : -126.0)`, p);
    s.line(`let ${out} = ${sg} * (${e} > 0.0 ? (1.0 + ${m} / 128.0) : ${m} / 128.0) * ${p};`);
  } else {
    // normal: (1 + m/1024) · 2^(e − 15); subnormal: m/1024 · 2^−14
    pow2(s, `(${e} > 0.0 ? ${e} - 15.0 : -14.0)`, p);
    s.line(`let ${out} = ${sg} * (${e} > 0.0 ? (1.0 + ${m} / 1024.0) : ${m} / 1024.0) * ${p};`);
  }
  s.line(`if (${e} >= ${lit(expMax)}) { ${out} = ${m} > 0.0 ? ${sp}[1] : ${sg} * ${sp}[0]; }`);
}

/** Emits `out` = the 16-bit pattern (as an f32 value) of f32 `x`, rounded to nearest even like the reference.
 *  (−0 narrows to +0: without a bitcast the sign of zero is not observable in gpu.js.) */
export function encode16(s: Src, dtype: 'f16' | 'bf16', x: string, out: string): void {
  const xv = s.v('x'), sg = s.v('sg'), a = s.v('a'), e = s.v('e'), p = s.v('p'), sc = s.v('sc'), q = s.v('q'), r = s.v('r'), f = s.v('f');
  const bf = dtype === 'bf16';
  const mant = bf ? 128 : 1024; // 2^(explicit mantissa bits)
  const bias = bf ? 127 : 15;
  const minExp = 1 - bias; // smallest normal exponent: −126 / −14
  s.line(`let ${xv} = ${x};`);
  s.line(`let ${sg} = ${xv} < 0.0 ? 32768.0 : 0.0;`);
  s.line(`let ${a} = Math.abs(${xv});`);
  s.line(`let ${out} = ${sg};`);
  // exponent: floor(log2 a), corrected by one step either way with exact powers of two
  s.line(`let ${e} = Math.floor(Math.log2(${a} > 0.0 ? ${a} : 1.0));`);
  s.line(`if (${e} < ${lit(minExp)}) { ${e} = ${lit(minExp - 1)}; }`);
  s.line(`if (${e} > 127.0) { ${e} = 127.0; }`);
  pow2(s, e, p);
  s.line(`if (${p} > ${a} && ${e} >= ${lit(minExp)}) { ${e} = ${e} - 1.0; ${p} = ${p} * 0.5; }`);
  s.line(`if (${p} * 2.0 <= ${a} && ${e} < 127.0) { ${e} = ${e} + 1.0; ${p} = ${p} * 2.0; }`);
  // scale so that the kept mantissa is the integer part: q = a · 2^(log2(mant) − e), subnormals at the min exponent
  s.line(`let ${sc} = ${e} < ${lit(minExp)} ? ${lit(minExp)} : ${e};`);
  const inv = s.v('inv');
  // 2^(−sc) without ever forming a subnormal or overflowing: split the exponent in two halves
  const h1 = s.v('h1'), h2 = s.v('h2');
  s.line(`let ${h1} = Math.floor(-${sc} * 0.5);`);
  pow2(s, h1, inv);
  pow2(s, `(-${sc} - ${h1})`, h2);
  s.line(`let ${q} = ${a} * ${inv} * ${h2} * ${lit(mant)};`);
  s.line(`let ${r} = Math.floor(${q});`);
  s.line(`let ${f} = ${q} - ${r};`);
  s.line(`if (${f} > 0.5 || (${f} == 0.5 && ${r} - 2.0 * Math.floor(${r} * 0.5) > 0.5)) { ${r} = ${r} + 1.0; }`);
  // normal: (e + bias)·mant + (r − mant); the carry r = 2·mant lands on the next exponent by itself
  s.line(`if (${e} < ${lit(minExp)}) { ${out} = ${sg} + ${r}; } else { ${out} = ${sg} + (${e} + ${lit(bias)}) * ${lit(mant)} + (${r} - ${lit(mant)}); }`);
  const infBits = bf ? 0x7f80 : 0x7c00;
  s.line(`if (${out} - ${sg} >= ${lit(infBits)}) { ${out} = ${sg} + ${lit(infBits)}; }`);
  s.line(`if (${a} == 0.0) { ${out} = ${sg}; }`);
  // NaN (x != x) → the quiet NaN pattern
  s.line(`if (${xv} != ${xv}) { ${out} = ${lit(bf ? 0x7fc0 : 0x7e00)}; }`);
}
