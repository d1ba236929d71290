// The meta backend: tensors have shapes and dtypes but no data, and kernels do nothing. Running a model graph on
// it costs nothing, yet every op still validates shapes and records its FLOPs and bytes, so `lavi cost` can
// report a 7B model's cost from its config alone, counted by the same ops that run for real.

import { type Backend, type BackendInfo, OP_NAMES, SUPPORTED, type Support } from '../../core/backend.js';
import { bytesPerElement, DTYPES, type DType, type HostArray } from '../../core/dtype.js';
import { BackendError } from '../../core/errors.js';

/** Storage on the meta backend: just a byte count (so memory can still be accounted). */
interface MetaStorage {
  bytes: number;
}

export class MetaBackend implements Backend {
  readonly name = 'meta';
  private live = 0;
  private peak = 0;

  info(): BackendInfo {
    return { name: 'meta', device: 'none', software: false, description: 'shape-only: no data, no compute (cost accounting)', dtypes: DTYPES };
  }

  memory(): { liveBytes: number; peakBytes: number } {
    return { liveBytes: this.live, peakBytes: this.peak };
  }

  alloc(size: number, dtype: DType): MetaStorage {
    const s = { bytes: size * bytesPerElement(dtype) };
    this.live += s.bytes;
    this.peak = Math.max(this.peak, this.live);
    return s;
  }
  upload(data: HostArray, dtype: DType): MetaStorage {
    return this.alloc(data.length, dtype);
  }
  async read(): Promise<HostArray> {
    throw new BackendError('meta: tensors on the meta backend have no values to read');
  }
  free(storage: unknown): void {
    this.live -= (storage as MetaStorage).bytes;
  }
  async sync(): Promise<void> {}
  async destroy(): Promise<void> {}
  supports(): Support {
    return SUPPORTED;
  }
}

// Every kernel is a no-op.
for (const op of OP_NAMES) (MetaBackend.prototype as unknown as Record<string, () => void>)[op] = () => {};
export interface MetaBackend extends Pick<Backend, (typeof OP_NAMES)[number]> {}
