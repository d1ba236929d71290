// Benchmark inputs: n uniform floats in [-1, 1) from a seeded linear congruential generator (Numerical Recipes'
// constants), so every run and every backend times the same data. Not for statistics, only for filling tensors.

export function random(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}
