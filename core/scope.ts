// Scoped disposal. `tidy(fn)` disposes every tensor created while fn runs, except the ones it returns (or that
// were passed to `keep`). Scopes nest. Model code runs each layer inside tidy so intermediates are freed at once,
// which matters on GPUs where memory is not garbage-collected.
//
// tidy is synchronous on purpose: ops only *enqueue* work (a GPU backend submits later), so a whole forward pass
// is synchronous code, and a synchronous scope cannot be confused by interleaved async tasks.

import type { Tensor } from './tensor.js';
import { LaviError } from './errors.js';

const stack: Set<Tensor>[] = [];

/** Called by the Tensor constructor: the innermost open scope takes ownership. */
export function trackTensor(t: Tensor): void {
  stack[stack.length - 1]?.add(t);
}

/** Removes `t` from the innermost scope that holds it, so it outlives that scope. Returns t. */
export function keep<T extends Tensor>(t: T): T {
  for (let i = stack.length - 1; i >= 0; i--) if (stack[i]!.delete(t)) break;
  return t;
}

/** Collects the tensors found in a (possibly nested) result value. */
function collect(value: unknown, out: Set<Tensor>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if ((value as { constructor?: { name?: string } }).constructor?.name === 'Tensor') {
    out.add(value as Tensor);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, depth + 1);
}

/**
 * Runs fn; disposes the tensors it created, except those reachable from its return value (tensors inside arrays,
 * Maps or plain objects count), which move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
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
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of scope) if (!kept.has(t)) t.dispose();
  const parent = stack[stack.length - 1];
  if (parent) for (const t of kept) if (scope.has(t)) parent.add(t);
  return result;
}
