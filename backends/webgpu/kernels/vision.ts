// Vision kernels.
// patchEmbed runs as the matmul tile kernel with an on-the-fly im2col reader for a (see matmul.ts).
// resizeGrid: one invocation per (output token, 4 features); the four source taps are read as vec4 when the
// feature count is a multiple of 4. Source coordinates use half-pixel centres clamped at 0 (PyTorch bilinear,
// align_corners=False), computed in f32.

import type { PatchEmbedAttrs, ResizeGridAttrs } from '../../../core/backend.js';
import type { Tensor } from '../../../core/tensor.js';
import { ParamLayout } from '../params.js';
import { grid, type KernelEnv, sto, WGSL_WID } from './common.js';
import * as mm from './matmul.js';

export function patchEmbed(env: KernelEnv, out: Tensor, inputs: [Tensor, Tensor, Tensor | null], attrs: PatchEmbedAttrs): void {
  mm.patchEmbed(env, out, inputs, attrs);
}

const rsParams = new ParamLayout([
  ['B', 'u32'],
  ['D', 'u32'],
  ['inH', 'u32'],
  ['inW', 'u32'],
  ['outH', 'u32'],
  ['outW', 'u32'],
  ['offX', 'u32'],
  ['offO', 'u32'],
  ['sy', 'f32'],
  ['sx', 'f32'],
]);

function resizeShader(vec: boolean): string {
  const T = vec ? 'vec4f' : 'f32';
  return /* wgsl */ `${rsParams.wgsl('P')}
@group(0) @binding(0) var<storage, read> X: array<${T}>;
@group(0) @binding(1) var<storage, read_write> O: array<${T}>;
@group(0) @binding(2) var<uniform> p: P;
${WGSL_WID}
fn src(i: u32, inSize: u32, scale: f32) -> vec3f {
  let x = max(0.0, (f32(i) + 0.5) * scale - 0.5);
  let i0 = min(u32(floor(x)), inSize - 1u);
  let i1 = min(i0 + 1u, inSize - 1u);
  return vec3f(f32(i0), f32(i1), x - f32(i0));
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let per = ${vec ? 'p.D / 4u' : 'p.D'};
  let e = wid(w, nw) * 64u + li;
  let outTok = p.outH * p.outW;
  if (e >= p.B * outTok * per) { return; }
  let f = e % per;
  let tok = e / per;
  let b = tok / outTok;
  let r = tok % outTok;
  let oy = r / p.outW;
  let ox = r % p.outW;
  let sy = src(oy, p.inH, p.sy);
  let sx = src(ox, p.inW, p.sx);
  let base = b * p.inH * p.inW;
  let y0 = u32(sy.x); let y1 = u32(sy.y); let x0 = u32(sx.x); let x1 = u32(sx.y);
  let xo = ${vec ? 'p.offX / 4u' : 'p.offX'};
  let v00 = X[xo + (base + y0 * p.inW + x0) * per + f];
  let v01 = X[xo + (base + y0 * p.inW + x1) * per + f];
  let v10 = X[xo + (base + y1 * p.inW + x0) * per + f];
  let v11 = X[xo + (base + y1 * p.inW + x1) * per + f];
  let top = v00 * (1.0 - sx.z) + v01 * sx.z;
  let bot = v10 * (1.0 - sx.z) + v11 * sx.z;
  O[${vec ? 'p.offO / 4u' : 'p.offO'} + tok * per + f] = top * (1.0 - sy.z) + bot * sy.z;
}`;
}

export function resizeGrid(env: KernelEnv, out: Tensor, [x]: [Tensor], { inH, inW, outH, outW }: ResizeGridAttrs): void {
  const { rt } = env;
  const [B, , D] = x.shape as [number, number, number];
  if (out.size === 0) return;
  const xv = rt.view(sto(x));
  const ov = rt.view(sto(out));
  const vec = D % 4 === 0 && xv.elemOffset % 4 === 0 && ov.elemOffset % 4 === 0;
  const pipe = rt.pipe({ label: `resizeGrid${vec ? '_v4' : ''}`, code: resizeShader(vec), bindings: ['r', 'w'], params: rsParams });
  const per = vec ? D / 4 : D;
  rt.dispatch(
    pipe,
    [xv, ov],
    { B, D, inH, inW, outH, outW, offX: xv.elemOffset, offO: ov.elemOffset, sy: inH / outH, sx: inW / outW },
    grid(B * outH * outW * per, 64, env.caps),
  );
}
