// The one path every op takes to a backend: check the inputs are alive and on one backend, allocate the output,
// ask the backend whether it supports the call (a "no" is an error with the backend's reason — never a silent
// fallback), run the kernel, record the cost, and tell observers (trace recording, instrumentation).

import type { Backend, KernelAttrs, KernelInputs, OpName } from '../core/backend.js';
import { bytesPerElement, type DType } from '../core/dtype.js';
import { TensorStateError, UnsupportedError } from '../core/errors.js';
import { costRecording, recordCost } from '../core/cost.js';
import { Tensor } from '../core/tensor.js';
import { sizeOf, type Shape } from '../core/shape.js';

export interface OpCall<K extends OpName = OpName> {
  op: K;
  backend: Backend;
  out: Tensor;
  inputs: KernelInputs<K>;
  attrs: KernelAttrs<K>;
}

export type OpObserver = (call: OpCall) => void;
const observers: OpObserver[] = [];

/** Registers a function called after every kernel call (for tracing). Returns a function that removes it. */
export function addOpObserver(fn: OpObserver): () => void {
  observers.push(fn);
  return () => {
    const i = observers.indexOf(fn);
    if (i >= 0) observers.splice(i, 1);
  };
}

/** The backend shared by all (non-null) inputs; mixing backends is an error naming the op. */
export function backendOf(op: string, inputs: readonly (Tensor | null)[], first: Tensor | null = null): Backend {
  // `first` (an in-place op's output) counts as one more input, checked before the others, without an array.
  if (first) first.assertAlive(op);
  let backend: Backend | undefined = first?.backend;
  for (const t of inputs) {
    if (!t) continue;
    t.assertAlive(op);
    if (!backend) backend = t.backend;
    else if (t.backend !== backend) {
      throw new TensorStateError(`${op}: inputs live on different backends ('${backend.name}' and '${t.backend.name}'); move them first`);
    }
  }
  if (!backend) throw new TensorStateError(`${op}: no input tensor`);
  return backend;
}

export function tensorBytes(t: Tensor | null): number {
  return t ? t.size * bytesPerElement(t.dtype) : 0;
}

export interface CostHint {
  flops: number;
  /** Defaults to the bytes of all inputs. */
  bytesRead?: number;
}

/** Allocates the output, checks support, runs the kernel `op`, records cost. */
export function runKernel<K extends OpName>(
  op: K,
  outShape: Shape,
  outDType: DType,
  inputs: KernelInputs<K>,
  attrs: KernelAttrs<K>,
  cost: CostHint,
): Tensor {
  const backend = backendOf(op, inputs as readonly (Tensor | null)[]);
  const size = sizeOf(outShape, op);
  const out = Tensor.fromStorageSized(backend, outShape, size, outDType, backend.alloc(size, outDType));
  try {
    check(backend, op, out, inputs, attrs);
    backend[op](out, inputs as never, attrs as never);
  } catch (e) {
    out.dispose();
    throw e;
  }
  finish(op, backend, out, inputs, attrs, cost);
  return out;
}

/** Runs an in-place kernel whose output is an existing tensor (writeSlice). */
export function runInPlace<K extends OpName>(op: K, out: Tensor, inputs: KernelInputs<K>, attrs: KernelAttrs<K>, cost: CostHint): Tensor {
  // out as the first input, without building [out, ...inputs] (KV-cache writes run per layer and token).
  const backend = backendOf(op, inputs as readonly (Tensor | null)[], out);
  check(backend, op, out, inputs, attrs);
  backend[op](out, inputs as never, attrs as never);
  finish(op, backend, out, inputs, attrs, cost);
  return out;
}

function check<K extends OpName>(backend: Backend, op: K, out: Tensor, inputs: KernelInputs<K>, attrs: KernelAttrs<K>): void {
  const s = backend.supports(op, out, inputs, attrs);
  if (!s.ok) throw new UnsupportedError(`${op}: backend '${backend.name}' cannot run it: ${s.reason}`);
}

function finish<K extends OpName>(op: K, backend: Backend, out: Tensor, inputs: KernelInputs<K>, attrs: KernelAttrs<K>, cost: CostHint): void {
  if (costRecording()) {
    let read = cost.bytesRead;
    if (read === undefined) {
      read = 0;
      for (const t of inputs as readonly (Tensor | null)[]) read += tensorBytes(t);
    }
    recordCost(op, cost.flops, read, tensorBytes(out));
  }
  if (observers.length) {
    const call = { op, backend, out, inputs, attrs } as OpCall;
    for (const fn of observers) fn(call);
  }
}
