// Index-based ops: embedding lookup, argmax, dtype cast.

import type { DType } from '../core/dtype.js';
import { isDType } from '../core/dtype.js';
import { DTypeError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { FLOAT_STORAGE, requireDType, requireRank } from './check.js';
import { runKernel, tensorBytes } from './dispatch.js';

/** Rows of `table` [V, D] (f32/f16/bf16) picked by `ids` (i32, any shape) → [...ids.shape, D] f32.
 *  Out-of-range ids give zero rows: validate ids before uploading them. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  requireRank('embedding', 'table', table, 2);
  requireDType('embedding', 'table', table, FLOAT_STORAGE);
  requireDType('embedding', 'ids', ids, ['i32']);
  const D = table.shape[1]!;
  const rowBytes = tensorBytes(table) / Math.max(1, table.shape[0]!);
  return runKernel('embedding', [...ids.shape, D], 'f32', [table, ids], {}, { flops: 0, bytesRead: ids.size * (rowBytes + 4) });
}

/** Index of the maximum along the last axis → i32 of shape x.shape[:-1]. */
export function argmax(x: Tensor): Tensor {
  requireDType('argmax', 'x', x, FLOAT_STORAGE);
  requireRank('argmax', 'x', x, 1, 8);
  return runKernel('argmax', x.shape.slice(0, -1), 'i32', [x], {}, { flops: x.size });
}

/** Converts to another storage dtype (float → float rounds to nearest even; float → i32 truncates). */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (!isDType(dtype)) throw new DTypeError(`cast: unknown dtype ${String(dtype)}`);
  return runKernel('cast', x.shape, dtype, [x], {}, { flops: 0 });
}
