// Error metrics for comparing a backend's output with the reference (ggml test-backend-ops style):
// NMSE = Σ(x−ref)² / Σref² as the aggregate, plus max-abs error, NaN/Inf checks and the first element that is
// outside |x − ref| ≤ atol + rtol·|ref|, so a failure message points at something concrete.

import type { Tolerance } from '../../core/op-table.js';

export type { Tolerance };

export interface Comparison {
  ok: boolean;
  nmse: number;
  maxAbs: number;
  /** First index outside atol + rtol·|ref|, with both values; null when none. */
  firstMismatch: { index: number; got: number; want: number } | null;
  /** Why it failed, in one line ('' when ok). */
  reason: string;
}

export function compare(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance): Comparison {
  if (got.length !== want.length) {
    return { ok: false, nmse: Infinity, maxAbs: Infinity, firstMismatch: null, reason: `length ${got.length} ≠ reference length ${want.length}` };
  }
  // The elementwise bound is loose on purpose (it catches one grossly wrong element that an aggregate NMSE would
  // average away, e.g. an out-of-place write); the NMSE threshold catches small systematic errors.
  const atol = tol.atol ?? (tol.nmse === 0 ? 0 : 1e-3);
  const rtol = tol.rtol ?? (tol.nmse === 0 ? 0 : 1e-2);
  let err = 0, ref = 0, maxAbs = 0;
  let firstMismatch: Comparison['firstMismatch'] = null;
  let badSpecial: string | null = null;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (Number.isNaN(w) || Number.isNaN(g)) {
      // Any NaN is a failure unless the reference has a NaN in the same place.
      if (!(Number.isNaN(w) && Number.isNaN(g)) && !badSpecial) badSpecial = `NaN at ${i} (got ${g}, want ${w})`;
      continue;
    }
    if (!Number.isFinite(w) || !Number.isFinite(g)) {
      if (g !== w && !badSpecial) badSpecial = `Inf mismatch at ${i} (got ${g}, want ${w})`;
      continue;
    }
    const d = g - w;
    err += d * d;
    ref += w * w;
    const ad = Math.abs(d);
    if (ad > maxAbs) maxAbs = ad;
    if (!firstMismatch && ad > atol + rtol * Math.abs(w)) firstMismatch = { index: i, got: g, want: w };
  }
  const nmse = ref > 0 ? err / ref : err; // an all-zero reference: plain squared error
  let reason = '';
  if (badSpecial) reason = badSpecial;
  else if (tol.nmse === 0 ? err !== 0 : nmse > tol.nmse) {
    reason = `NMSE ${nmse.toExponential(2)} > ${tol.nmse.toExponential(0)}` + (firstMismatch ? `; first mismatch at ${firstMismatch.index}: got ${firstMismatch.got}, want ${firstMismatch.want}` : '');
  } else if (firstMismatch) {
    reason = `element ${firstMismatch.index} off by more than ${atol} + ${rtol}·|want|: got ${firstMismatch.got}, want ${firstMismatch.want} (NMSE ${nmse.toExponential(2)})`;
  }
  return { ok: reason === '', nmse, maxAbs, firstMismatch, reason };
}
