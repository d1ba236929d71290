// Elementwise kernels: unary activations, scale, SwiGLU, broadcasting binary ops.
//
// Strategy: one invocation per 4 consecutive outputs. Contiguous operands are read as vec4 (lavapipe emits a
// bounds-checked per-lane loop for every storage load instruction, so one vec4 load costs about a third of four
// scalar loads per element); the output is written as one vec4, with a read-modify-write of the final partial
// group so that nothing past the tensor is touched. Broadcast operands are read through strides over the
// collapsed shape (adjacent dimensions merged on the host), a single value (size-1 operand), or a vec4 when the
// innermost dimension is contiguous and a multiple of 4. Flat ops on tensors larger than one binding run as
// several dispatches over aligned element ranges.

import type { BinaryAttrs, ScaleAttrs, UnaryAttrs, UnaryOp } from '../../../core/backend.js';
import { broadcastStrides, sameShape, stridesOf } from '../../../core/shape.js';
import type { Tensor } from '../../../core/tensor.js';
import { ParamLayout } from '../params.js';
import type { View } from '../runtime.js';
import { collapseDims, grid, type KernelEnv, sto, vec8, WGSL_AT8, WGSL_MATH, WGSL_WID } from './common.js';

const WG = 64;

type Mode = 'vec' | 'one' | 'inner4v' | 'inner4' | 'any';

interface Operand {
  mode: Mode;
}

const UNARY_EXPR: Record<UnaryOp, (v: string) => string> = {
  gelu_tanh: (v) => `vec4f(geluTanh(${v}.x), geluTanh(${v}.y), geluTanh(${v}.z), geluTanh(${v}.w))`,
  gelu_erf: (v) => `vec4f(geluErf(${v}.x), geluErf(${v}.y), geluErf(${v}.z), geluErf(${v}.w))`,
  silu: (v) => `vec4f(siluf(${v}.x), siluf(${v}.y), siluf(${v}.z), siluf(${v}.w))`,
  relu: (v) => `max(${v}, vec4f(0.0))`,
  tanh: (v) => `vec4f(tanhf(${v}.x), tanhf(${v}.y), tanhf(${v}.z), tanhf(${v}.w))`,
  exp: (v) => `exp(${v})`,
  neg: (v) => `-(${v})`,
  sqrt: (v) => `sqrt(${v})`,
  rsqrt: (v) => `1.0 / sqrt(${v})`,
};

/** The shader's case index of each op: UNARY_EXPR's keys (a Record over UnaryOp, so no op can be missing). */
const UNARY_OPS = Object.keys(UNARY_EXPR) as UnaryOp[];
const BINARY_OPS: BinaryAttrs['op'][] = ['add', 'sub', 'mul', 'div'];

/** One shader for every unary op (a uniform switch), one for every binary op: fewer kernels to compile. */
const WGSL_UNARY = `fn un(op: u32, v: vec4f) -> vec4f {
  switch op {
${UNARY_OPS.map((o, i) => `    case ${i}u: { return ${UNARY_EXPR[o]('v')}; }`).join('\n')}
    default: { return v; }
  }
}`;
const WGSL_BINARY = `fn bin(op: u32, a: vec4f, b: vec4f) -> vec4f {
  switch op {
    case 0u: { return a + b; }
    case 1u: { return a - b; }
    case 2u: { return a * b; }
    default: { return a / b; }
  }
}`;

const params = new ParamLayout([
  ['n', 'u32'],
  ['rank', 'u32'],
  ['off0', 'u32'],
  ['off1', 'u32'],
  ['offO', 'u32'],
  ['s0', 'f32'],
  ['s1', 'f32'],
  ['op', 'u32'],
  ['shapeA', 'vec4u'],
  ['shapeB', 'vec4u'],
  ['st0A', 'vec4u'],
  ['st0B', 'vec4u'],
  ['st1A', 'vec4u'],
  ['st1B', 'vec4u'],
]);

/** WGSL that loads operand k's 4 values for output group q into `v{k}`. */
function loadOperand(k: number, op: Operand): string {
  const arr = `X${k}`;
  const off = `p.off${k}`;
  const st = (j: string) => `at8(p.st${k}A, p.st${k}B, ${j})`;
  switch (op.mode) {
    case 'vec':
      return `let v${k} = ${arr}[${off} / 4u + q];`;
    case 'one':
      return `let v${k} = vec4f(${arr}[${off}]);`;
    case 'inner4v':
      return `let v${k} = ${arr}[(${off} + offs${k}(q * 4u)) / 4u];`;
    case 'inner4':
      return `let b${k} = ${off} + offs${k}(q * 4u); let l${k} = ${st('p.rank - 1u')};
  let v${k} = vec4f(${arr}[b${k}], ${arr}[b${k} + l${k}], ${arr}[b${k} + 2u * l${k}], ${arr}[b${k} + 3u * l${k}]);`;
    case 'any':
      return `let v${k} = vec4f(${arr}[${off} + offs${k}(min(q * 4u, p.n - 1u))], ${arr}[${off} + offs${k}(min(q * 4u + 1u, p.n - 1u))], ${arr}[${off} + offs${k}(min(q * 4u + 2u, p.n - 1u))], ${arr}[${off} + offs${k}(min(q * 4u + 3u, p.n - 1u))]);`;
  }
}

function shader(ops: Operand[], expr: string): string {
  const decls = ops
    .map((o, k) => `@group(0) @binding(${k}) var<storage, read> X${k}: array<${o.mode === 'vec' || o.mode === 'inner4v' ? 'vec4f' : 'f32'}>;`)
    .join('\n');
  const offsetFns = ops
    .map((o, k) =>
      o.mode === 'inner4v' || o.mode === 'inner4' || o.mode === 'any'
        ? `fn offs${k}(e0: u32) -> u32 {
  var e = e0;
  var off = 0u;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let n = at8(p.shapeA, p.shapeB, u32(d));
    off += (e % n) * at8(p.st${k}A, p.st${k}B, u32(d));
    e = e / n;
  }
  return off;
}`
        : '',
    )
    .join('\n');
  return /* wgsl */ `${params.wgsl('P')}
${decls}
@group(0) @binding(${ops.length}) var<storage, read_write> O: array<vec4f>;
@group(0) @binding(${ops.length + 1}) var<uniform> p: P;
${WGSL_WID}
${WGSL_AT8}
${WGSL_MATH}
${WGSL_UNARY}
${WGSL_BINARY}
${offsetFns}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let q = wid(w, nw) * ${WG}u + li;
  if (q * 4u >= p.n) { return; }
  ${ops.map((o, k) => loadOperand(k, o)).join('\n  ')}
  let r = ${expr};
  let oi = p.offO / 4u + q;
  if (q * 4u + 4u <= p.n) {
    O[oi] = r;
  } else {
    // Last, partial group: keep what lies past the end of the tensor.
    let rest = p.n - q * 4u;
    let old = O[oi];
    O[oi] = select(old, r, vec4<bool>(true, rest > 1u, rest > 2u, false));
  }
}`;
}

/** Element ranges [start, end) whose bindings fit, for flat ops over `n` elements of 4-byte operands. */
export function flatChunks(env: KernelEnv, n: number, bytesPerElem = 4): [number, number][] {
  const max = env.caps.maxBindingBytes;
  const align = Math.max(env.caps.offsetAlign, 256);
  let per = Math.floor((max - align - 64) / bytesPerElem);
  per -= per % Math.max(64, align / Math.min(bytesPerElem, 4));
  if (per <= 0) per = 64;
  const out: [number, number][] = [];
  for (let s = 0; s < n; s += per) out.push([s, Math.min(n, s + per)]);
  if (out.length === 0) out.push([0, 0]);
  return out;
}

function runFlat(env: KernelEnv, label: string, ops: Operand[], inputs: Tensor[], out: Tensor, expr: string, extra: Record<string, number> = {}): void {
  const { rt } = env;
  const pipe = rt.pipe({ label, code: shader(ops, expr), bindings: [...ops.map(() => 'r' as const), 'w'], params });
  for (const [s, e] of flatChunks(env, out.size)) {
    if (e <= s) continue;
    const views: View[] = inputs.map((t, k) => (ops[k]!.mode === 'one' ? rt.view(sto(t), 0, 1) : rt.view(sto(t), s, e)));
    const ov = rt.view(sto(out), s, e);
    rt.dispatch(
      pipe,
      [...views, ov],
      { n: e - s, off0: views[0]?.elemOffset ?? 0, off1: views[1]?.elemOffset ?? 0, offO: ov.elemOffset, ...extra },
      grid(Math.ceil((e - s) / 4), WG, env.caps),
    );
  }
}

export function unary(env: KernelEnv, out: Tensor, [x]: [Tensor], { op }: UnaryAttrs): void {
  runFlat(env, 'unary', [{ mode: 'vec' }], [x], out, 'un(p.op, v0)', { op: UNARY_OPS.indexOf(op) });
}

export function scale(env: KernelEnv, out: Tensor, [x]: [Tensor], { scale: s, shift }: ScaleAttrs): void {
  runFlat(env, 'scale', [{ mode: 'vec' }], [x], out, 'v0 * p.s0 + vec4f(p.s1)', { s0: s, s1: shift });
}

export function swiglu(env: KernelEnv, out: Tensor, [gate, up]: [Tensor, Tensor]): void {
  runFlat(env, 'swiglu', [{ mode: 'vec' }, { mode: 'vec' }], [gate, up], out, 'vec4f(siluf(v0.x), siluf(v0.y), siluf(v0.z), siluf(v0.w)) * v1');
}

/** Whether a broadcasting binary op can run (large broadcast operands are not split). */
export function binaryFits(env: KernelEnv, out: Tensor, a: Tensor, b: Tensor): boolean {
  if ((sameShape(a.shape, out.shape) || a.size === 1) && (sameShape(b.shape, out.shape) || b.size === 1)) return true;
  return [a, b, out].every((t) => env.rt.fitsBinding(t.dtype, t.size));
}

/** Broadcast index math covers 8 dimensions after merging. */
export function binaryWhyNot(out: Tensor, a: Tensor, b: Tensor): string | null {
  const { shape } = collapseDims(out.shape, [broadcastStrides(a.shape, out.shape), broadcastStrides(b.shape, out.shape), stridesOf(out.shape)]);
  return shape.length > 8 ? `broadcasting over more than 8 non-mergeable dimensions (out [${out.shape.join(', ')}])` : null;
}

export function binary(env: KernelEnv, out: Tensor, [a, b]: [Tensor, Tensor], { op }: BinaryAttrs): void {
  const expr = 'bin(p.op, v0, v1)';
  const opIndex = BINARY_OPS.indexOf(op);
  const flatA = sameShape(a.shape, out.shape) ? 'vec' : a.size === 1 ? 'one' : null;
  const flatB = sameShape(b.shape, out.shape) ? 'vec' : b.size === 1 ? 'one' : null;
  if (flatA && flatB) {
    runFlat(env, `binary_${flatA}_${flatB}`, [{ mode: flatA }, { mode: flatB }], [a, b], out, expr, { op: opIndex });
    return;
  }
  // General broadcasting over the collapsed shape.
  const { rt } = env;
  const { shape, strides } = collapseDims(out.shape, [broadcastStrides(a.shape, out.shape), broadcastStrides(b.shape, out.shape), stridesOf(out.shape)]);
  const rank = shape.length;
  const inner = shape[rank - 1]!;
  const modeFor = (t: Tensor, st: number[]): Mode => {
    if (t.size === 1) return 'one';
    if (inner % 4 === 0) {
      const lastUnit = st[rank - 1] === 1 && st.slice(0, rank - 1).every((s) => s % 4 === 0);
      return lastUnit ? 'inner4v' : 'inner4';
    }
    return 'any';
  };
  const va = rt.view(sto(a));
  const vb = rt.view(sto(b));
  const vo = rt.view(sto(out));
  const ops: Operand[] = [{ mode: modeFor(a, strides[0]!) }, { mode: modeFor(b, strides[1]!) }];
  // vec4 reads of a strided operand also need its binding offset aligned to 4 elements.
  if (ops[0]!.mode === 'inner4v' && va.elemOffset % 4 !== 0) ops[0]!.mode = 'inner4';
  if (ops[1]!.mode === 'inner4v' && vb.elemOffset % 4 !== 0) ops[1]!.mode = 'inner4';
  const pipe = rt.pipe({ label: `binary_bcast_${ops[0]!.mode}_${ops[1]!.mode}`, code: shader(ops, expr), bindings: ['r', 'r', 'w'], params });
  const [shA, shB] = vec8(shape, 1);
  const [a0, a1] = vec8(strides[0]!);
  const [b0, b1] = vec8(strides[1]!);
  rt.dispatch(
    pipe,
    [va, vb, vo],
    { n: out.size, rank, op: opIndex, off0: va.elemOffset, off1: vb.elemOffset, offO: vo.elemOffset, shapeA: shA, shapeB: shB, st0A: a0, st0B: a1, st1A: b0, st1B: b1 },
    grid(Math.ceil(out.size / 4), WG, env.caps),
  );
}
