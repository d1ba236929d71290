// Cost accounting. Every op reports the FLOPs it performs and the bytes it reads and writes to the active
// recorder (if any). Model code opens named sections ("vision", "llm", ...) so costs can be split by part.
// The same recorder works on a real backend and on the shape-only 'meta' backend, so a 7B cost report needs no
// weights and the numbers are those of the code that actually runs.

export interface CostEntry {
  calls: number;
  flops: number;
  bytesRead: number;
  bytesWritten: number;
}

function emptyEntry(): CostEntry {
  return { calls: 0, flops: 0, bytesRead: 0, bytesWritten: 0 };
}

export class CostRecorder {
  /** section → op → cost */
  readonly sections = new Map<string, Map<string, CostEntry>>();
  private sectionStack: string[] = [];
  /** The joined name of the open section: `add` runs once per op (hundreds per decoded token), sections open and
   *  close far less often, so the name is built on entry rather than per op. */
  private current = 'other';

  /** Runs fn with costs attributed to `name` (nested sections join with '/'). */
  section<T>(name: string, fn: () => T): T {
    const outer = this.current;
    this.sectionStack.push(name);
    this.current = this.sectionStack.join('/') || 'other';
    try {
      return fn();
    } finally {
      this.sectionStack.pop();
      this.current = outer;
    }
  }

  get currentSection(): string {
    return this.current;
  }

  add(op: string, flops: number, bytesRead: number, bytesWritten: number): void {
    let ops = this.sections.get(this.current);
    if (!ops) this.sections.set(this.current, (ops = new Map()));
    let e = ops.get(op);
    if (!e) ops.set(op, (e = emptyEntry()));
    e.calls++;
    e.flops += flops;
    e.bytesRead += bytesRead;
    e.bytesWritten += bytesWritten;
  }

  /** Totals over sections whose name starts with `prefix` ('' = all). */
  total(prefix = ''): CostEntry {
    const t = emptyEntry();
    for (const [sec, ops] of this.sections) {
      if (!sec.startsWith(prefix)) continue;
      for (const e of ops.values()) {
        t.calls += e.calls;
        t.flops += e.flops;
        t.bytesRead += e.bytesRead;
        t.bytesWritten += e.bytesWritten;
      }
    }
    return t;
  }

  /** Totals per op over sections starting with `prefix`. */
  byOp(prefix = ''): Map<string, CostEntry> {
    const out = new Map<string, CostEntry>();
    for (const [sec, ops] of this.sections) {
      if (!sec.startsWith(prefix)) continue;
      for (const [op, e] of ops) {
        const t = out.get(op) ?? emptyEntry();
        t.calls += e.calls;
        t.flops += e.flops;
        t.bytesRead += e.bytesRead;
        t.bytesWritten += e.bytesWritten;
        out.set(op, t);
      }
    }
    return out;
  }

  reset(): void {
    this.sections.clear();
  }
}

const active: CostRecorder[] = [];

/** Runs fn with `recorder` receiving the cost of every op it calls. */
export function withCost<T>(recorder: CostRecorder, fn: () => T): T {
  active.push(recorder);
  try {
    return fn();
  } finally {
    active.pop();
  }
}

/** Whether a recorder is listening (ops skip computing their byte counts when none is). */
export function costRecording(): boolean {
  return active.length > 0;
}

/** Called by each op. */
export function recordCost(op: string, flops: number, bytesRead: number, bytesWritten: number): void {
  const r = active[active.length - 1];
  if (r) r.add(op, flops, bytesRead, bytesWritten);
}

/** Opens a section on the active recorder, if any (model code calls this without caring whether costs are on). */
export function costSection<T>(name: string, fn: () => T): T {
  const r = active[active.length - 1];
  return r ? r.section(name, fn) : fn();
}

/** A FLOP count for people: "12.3 GFLOP" (three significant digits), "0" for none. */
export function formatFlops(x: number): string {
  if (x === 0) return '0';
  const units: [number, string][] = [[1e12, 'TFLOP'], [1e9, 'GFLOP'], [1e6, 'MFLOP'], [1e3, 'kFLOP']];
  for (const [u, n] of units) if (Math.abs(x) >= u) return `${(x / u).toFixed(x / u >= 100 ? 1 : x / u >= 10 ? 2 : 3)} ${n}`;
  return `${x} FLOP`;
}

/** Bytes in binary units: '0', '512 B', '1.50 KiB', '11.3 MiB', '2.00 GiB' (three significant figures). */
export function formatBytes(x: number): string {
  if (x === 0) return '0';
  const units: [number, string][] = [[2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']];
  for (const [u, n] of units) if (Math.abs(x) >= u) return `${(x / u).toFixed(x / u >= 100 ? 1 : 2)} ${n}`;
  return `${x} B`;
}
