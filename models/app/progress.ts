// Progress on stderr for work that is slow only the first time (a GPU backend compiling its kernels: ~20 s for
// webgpu on lavapipe, ~100 s for `lavi verify --backend gpujs-webgpu`). Silent unless the work has taken longer
// than `afterMs` (2 s): a fast run prints nothing. On a terminal one line is rewritten in place; otherwise a line
// every 10 s.

export class Progress {
  private timer: NodeJS.Timeout | null = null;
  private t0 = 0;
  private what = '';
  private done = 0;
  private shown = false;
  private lastLine = 0;
  private readonly tty: boolean;

  constructor(private readonly label: string, private readonly afterMs = 2000, private readonly out: NodeJS.WriteStream = process.stderr) {
    this.tty = Boolean(out.isTTY);
  }

  start(what: string): void {
    this.what = what;
    if (this.timer) return;
    this.t0 = Date.now();
    this.timer = setInterval(() => this.tick(), 500);
    this.timer.unref();
  }

  /** One more unit done (a case, a token); `what` says what is under way now. */
  step(what?: string): void {
    this.done++;
    if (what !== undefined) this.what = what;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.shown && this.tty) this.out.write('\r\x1b[K');
    this.shown = false;
  }

  private tick(): void {
    const ms = Date.now() - this.t0;
    if (ms < this.afterMs) return;
    const line = `${this.label}: ${this.what}${this.done ? ` (${this.done} done)` : ''}, ${(ms / 1000).toFixed(0)} s — the first use of a GPU backend compiles its kernels`;
    if (this.tty) {
      this.out.write(`\r\x1b[K${line.slice(0, (this.out.columns || 120) - 1)}`);
      this.shown = true;
    } else if (ms - this.lastLine >= 10_000 || this.lastLine === 0) {
      this.lastLine = ms;
      this.out.write(`${line}\n`);
    }
  }
}
