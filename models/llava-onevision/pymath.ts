// Python's float arithmetic where it differs from the obvious JavaScript. Hugging Face's LLaVA-OneVision code sizes
// its feature maps with Python expressions such as `int(h // ratio)` and `int(round(h * s, 7))`; reproducing the
// token count exactly (it must equal the number of `<image>` placeholders) needs Python's own semantics:
//
// - `a // b` on floats is NOT floor(a / b): CPython (Objects/floatobject.c, _float_div_mod) computes
//   mod = fmod(a, b) (exact), div = (a - mod) / b, fixes the sign of mod, then snaps div to the nearest integral
//   value (floor, plus one when the fraction exceeds one half). For 50 // 1.1111111111111112 that gives 44.0, while
//   Math.floor(50 / 1.1111111111111112) is 45 (the true quotient is 44.99999999999999955…, and the division
//   rounds it up to 45).
// - `round(x, 7)` rounds the exact binary value of x to 7 decimals (half to even); only its integer part is used
//   here, which is what JavaScript's toFixed(7) gives too (an exact tie at the 8th decimal cannot straddle an
//   integer: k − 5e-8 is not a binary fraction).

/** Python `a // b` for floats (CPython float_floor_div). */
export function pyFloorDiv(a: number, b: number): number {
  if (b === 0) throw new RangeError('float floor division by zero');
  let mod = a % b; // ECMAScript % on numbers is C fmod: exact, sign of the dividend
  let div = (a - mod) / b;
  if (mod !== 0) {
    if (b < 0 !== mod < 0) {
      mod += b;
      div -= 1;
    }
  }
  if (div !== 0) {
    let floordiv = Math.floor(div);
    if (div - floordiv > 0.5) floordiv += 1;
    return floordiv;
  }
  // zero quotient: the sign of the true quotient
  return a / b < 0 || Object.is(a / b, -0) ? -0 : 0;
}

/** Python `int(x)` for a finite float: truncation toward zero. */
export function pyInt(x: number): number {
  if (!Number.isFinite(x)) throw new RangeError(`cannot convert ${x} to an integer`);
  return Math.trunc(x) + 0; // + 0 turns -0 into 0
}

/** Python `int(round(x, 7))` for a finite float of magnitude below 1e21. */
export function pyIntRound7(x: number): number {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) throw new RangeError(`cannot round ${x}`);
  return pyInt(Number(x.toFixed(7)));
}

/** Python `a // b` for integers (floor division). */
export function intFloorDiv(a: number, b: number): number {
  return Math.floor(a / b);
}
