// Typed errors. Every error the engine throws on bad input is one of these, so callers can tell a shape mistake
// from a corrupt file from a backend that cannot run an op. Messages name the op/file/tensor and the offending
// shape or value.

export class LaviError extends Error {
  /** Stable machine-readable code, e.g. 'shape', 'dtype', 'unsupported'. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Shapes that do not fit an op (rank, broadcast, mismatched dims, out-of-range axes). */
export class ShapeError extends LaviError {
  constructor(message: string) {
    super('shape', message);
  }
}

/** A dtype an op or backend does not take, or a value that does not fit a dtype. */
export class DTypeError extends LaviError {
  constructor(message: string) {
    super('dtype', message);
  }
}

/** A value (attribute, argument) outside its allowed range. */
export class ValueError extends LaviError {
  constructor(message: string) {
    super('value', message);
  }
}

/** A backend that cannot run an op with these arguments; `reason` says why (never silently answered elsewhere). */
export class UnsupportedError extends LaviError {
  constructor(message: string) {
    super('unsupported', message);
  }
}

/** Use of a tensor after `dispose()`, or of a tensor from another backend. */
export class TensorStateError extends LaviError {
  constructor(message: string) {
    super('tensor-state', message);
  }
}

/** A malformed, truncated or inconsistent weight file. */
export class FormatError extends LaviError {
  constructor(message: string) {
    super('format', message);
  }
}

/** A backend-level failure: device lost, validation error, out of memory, a limit exceeded. */
export class BackendError extends LaviError {
  constructor(message: string) {
    super('backend', message);
  }
}

/** Formats a shape like PyTorch does, for messages: [2, 3, 4]. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
