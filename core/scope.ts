// Scoped disposal. `tidy(fn)` disposes every tensor created while fn runs, except the ones it returns (or that
// were passed to `keep`). Scopes nest. Model code runs each layer inside tidy so intermediates are freed at once,
// which matters on GPUs where memory is not garbage-collected.
//
// tidy is synchronous on purpose: ops only *enqueue* work (a GPU backend submits later), so a whole forward pass
// is synchronous code, and a synchronous scope cannot be confused by interleaved async tasks.

import type { Tensor } from './tensor.js';
import { LaviError } from './errors.js';

// Each scope is an array in creation order: a push per tensor is cheaper than a Set insertion, and ops make
// tensors far more often than anything leaves a scope early (keep, a tidy's result).
const stack: Tensor[][] = [];

/**
 * The brand that marks a Tensor (set once on Tensor.prototype). `collect` recognises tensors by it, not by the class
 * name: bundlers and minifiers rename classes, and a check on `constructor.name` then silently disposes the tensors a
 * tidy returns. Symbol.for, so two copies of the library (e.g. two bundles) still agree.
 */
export const TENSOR_BRAND: unique symbol = Symbol.for('lavi-ts.Tensor') as never;

/** True when `value` is a Tensor (of this or another copy of the library). */
export function isTensor(value: unknown): value is Tensor {
  return value !== null && typeof value === 'object' && (value as { [TENSOR_BRAND]?: unknown })[TENSOR_BRAND] === true;
}

/** Called by the Tensor constructor: the innermost open scope takes ownership. */
export function trackTensor(t: Tensor): void {
  const n = stack.length;
  if (n) stack[n - 1]!.push(t);
}

/** Removes `t` from the innermost scope that holds it, so it outlives that scope. Returns t. */
export function keep<T extends Tensor>(t: T): T {
  for (let i = stack.length - 1; i >= 0; i--) {
    const scope = stack[i]!;
    const j = scope.lastIndexOf(t); // usually one of the newest
    if (j >= 0) {
      scope.splice(j, 1);
      break;
    }
  }
  return t;
}

/** Collects the tensors found in a (possibly nested) result value, each once (`seen` takes over past 16). */
function collect(value: unknown, out: Tensor[], depth = 0, seen: { set: Set<Tensor> | null } = { set: null }): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if ((value as { [TENSOR_BRAND]?: unknown })[TENSOR_BRAND] === true) {
    const t = value as Tensor;
    if (seen.set ? seen.set.has(t) : out.includes(t)) return;
    out.push(t);
    if (seen.set) seen.set.add(t);
    else if (out.length > 16) seen.set = new Set(out);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, depth + 1, seen);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, depth + 1, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, depth + 1, seen);
}

/**
 * Runs fn; disposes the tensors it created, except those reachable from its return value (tensors inside arrays,
 * Maps or plain objects count), which move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Tensor[] = [];
  stack.push(scope);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) {
      throw new LaviError('scope', 'tidy: fn returned a Promise; tidy is synchronous (enqueue ops inside, await reads outside)');
    }
  } catch (e) {
    stack.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  stack.pop();
  const kept: Tensor[] = [];
  collect(result, kept);
  // A result is usually one tensor or a few; a Set only when it holds many.
  const keptSet = kept.length > 16 ? new Set(kept) : null;
  for (const t of scope) if (!(keptSet ? keptSet.has(t) : kept.includes(t))) t.dispose();
  const parent = stack[stack.length - 1];
  if (parent && kept.length) {
    const mine = kept.length > 16 ? new Set(scope) : null;
    for (const t of kept) if (mine ? mine.has(t) : scope.includes(t)) parent.push(t);
  }
  return result;
}
