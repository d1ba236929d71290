// The stdio server behind `lavi serve --stdio`: length-prefixed msgpack frames in, frames out. See
// models/PROTOCOL.md for the protocol. Also exports the framing (FrameDecoder, encodeFrame) that traces use.
//
// Robustness: a frame whose length prefix exceeds maxFrameBytes is rejected before anything is allocated; a
// frame that does not decode, or a partial frame left incomplete for frameTimeoutMs, is answered with an error
// and all buffered input is dropped (the host resends). One generation (ask/generate/verify) runs at a time;
// another one arriving meanwhile is rejected with code 'busy' (memory stays bounded: no queue).

import type { Readable, Writable } from 'node:stream';
import { Packr } from 'msgpackr';
import '../../backends/index.js';
import { getBackend } from '../../core/registry.js';
import { verifyBackend, summarize } from '../../backends/conformance/index.js';
import { LaviRuntime, type AskResult, type ImageSource, type RequestOptions } from './runtime.js';

export const DEFAULT_MAX_FRAME = 32 * 1024 * 1024;

/** msgpack without msgpackr's record extension, so any msgpack library (Python's msgpack) can read it. */
export const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** 4-byte big-endian length + msgpack body. */
export function encodeFrame(value: unknown): Buffer {
  const body = packr.pack(value);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

export type FrameEvent = { ok: true; value: unknown } | { ok: false; code: string; message: string };

/** Incremental frame decoder: push chunks, get decoded bodies or framing errors. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME) {}

  get pending(): number {
    return this.buffered;
  }

  /** Drops everything buffered (resynchronisation after an error). */
  reset(): void {
    this.chunks = [];
    this.buffered = 0;
  }

  push(chunk: Buffer): FrameEvent[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const events: FrameEvent[] = [];
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const len = head.readUInt32BE(0);
      if (len > this.maxFrameBytes) {
        this.reset();
        events.push({ ok: false, code: 'frame-too-large', message: `frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes} bytes; input buffer dropped` });
        break;
      }
      if (this.buffered < 4 + len) break;
      const all = this.take(4 + len);
      const body = all.subarray(4);
      let value: unknown;
      try {
        if (len === 0) throw new Error('empty body');
        value = packr.unpack(body);
      } catch (e) {
        this.reset();
        events.push({ ok: false, code: 'bad-frame', message: `frame body is not valid msgpack (${(e as Error).message}); input buffer dropped` });
        break;
      }
      events.push({ ok: true, value });
    }
    return events;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = Buffer.from(all.subarray(0, n)); // a copy: bodies may be kept (image bytes)
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

export interface ServeOptions {
  input: Readable;
  output: Writable;
  maxFrameBytes?: number;
  /** A partial frame not completed within this many ms is dropped with an error (default 2000). */
  frameTimeoutMs?: number;
  /** Defaults for 'load'. */
  modelDir?: string;
  backend?: string;
  /** Log line sink (stderr by default). */
  log?: (line: string) => void;
}

class RequestError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

type Req = Record<string, unknown> & { id?: unknown; type?: unknown };

const num = (v: unknown, name: string, opt = true): number | undefined => {
  if (v === undefined || v === null) {
    if (opt) return undefined;
    throw new RequestError('bad-argument', `'${name}' is required`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RequestError('bad-argument', `'${name}' must be a number`);
  return v;
};

function requestOptions(r: Req): RequestOptions {
  const o: RequestOptions = {};
  const m = num(r.maxNewTokens, 'maxNewTokens');
  if (m !== undefined) o.maxNewTokens = m;
  for (const k of ['temperature', 'topK', 'topP', 'seed'] as const) {
    const v = num(r[k], k);
    if (v !== undefined) o[k] = v;
  }
  if (r.stopTokens !== undefined) {
    if (!Array.isArray(r.stopTokens) || !r.stopTokens.every((x) => Number.isInteger(x))) throw new RequestError('bad-argument', "'stopTokens' must be an array of integers");
    o.stopTokens = r.stopTokens as number[];
  }
  return o;
}

function imageArg(v: unknown): ImageSource {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const w = o.width, h = o.height, d = o.data;
    if (Number.isInteger(w) && Number.isInteger(h) && d instanceof Uint8Array && (w as number) > 0 && (h as number) > 0) {
      const px = (w as number) * (h as number);
      if (d.length !== px * 3 && d.length !== px * 4) throw new RequestError('bad-argument', `image data has ${d.length} bytes; want width·height·3 (RGB) or ·4 (RGBA) = ${px * 3} or ${px * 4}`);
      return { width: w as number, height: h as number, data: new Uint8Array(d) } as ImageSource;
    }
  }
  throw new RequestError('bad-argument', "'image' must be PNG/JPEG file bytes (binary) or {width, height, data: binary RGB(A)}");
}

function summary(r: AskResult): Record<string, unknown> {
  return {
    answer: r.answer,
    tokens: r.tokens,
    stopReason: r.stopReason,
    promptTokens: r.promptTokens,
    visualTokens: r.visualTokens,
    timings: r.timings,
    ...(r.cost ? { cost: r.cost } : {}),
  };
}

/** Serves until 'shutdown' or the end of input; resolves with the exit code. */
export function serveStdio(o: ServeOptions): Promise<number> {
  const log = o.log ?? ((l: string) => process.stderr.write(`lavi serve: ${l}\n`));
  const dec = new FrameDecoder(o.maxFrameBytes ?? DEFAULT_MAX_FRAME);
  const t0 = Date.now();
  const counts = { requests: 0, errors: 0, tokens: 0, frameErrors: 0 };
  let rt: LaviRuntime | null = null;
  let loading: Promise<unknown> | null = null;
  let active: { id: unknown; ac: AbortController } | null = null;
  let closed = false;
  let partialTimer: NodeJS.Timeout | null = null;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  const send = (v: Record<string, unknown>) => {
    if (closed) return;
    o.output.write(encodeFrame(v));
  };
  const sendError = (id: unknown, code: string, message: string) => {
    counts.errors++;
    send({ ...(id !== undefined ? { id } : {}), type: 'error', code, message });
  };

  const finish = async (code: number) => {
    if (closed) return;
    active?.ac.abort('shutdown');
    closed = true;
    if (partialTimer) clearTimeout(partialTimer);
    o.input.off('data', onData);
    o.input.off('end', onEnd);
    await loading?.catch(() => undefined);
    rt?.dispose();
    rt = null;
    resolveDone(code);
  };

  const generation = async (id: unknown, run: (signal: AbortSignal, onToken: (text: string, token: number) => void) => Promise<AskResult>) => {
    if (!rt) throw new RequestError('not-loaded', "no model loaded: send {type:'load'} first");
    const ac = new AbortController();
    active = { id, ac };
    try {
      const r = await run(ac.signal, (text, token) => {
        counts.tokens++;
        send({ id, type: 'token', text, token });
      });
      send({ id, type: 'done', ...summary(r) });
    } finally {
      active = null;
    }
  };

  const handle = async (req: Req): Promise<void> => {
    const { id, type } = req;
    switch (type) {
      case 'load': {
        if (active) throw new RequestError('busy', 'a generation is running; cancel it or wait');
        const modelDir = req.modelDir ?? o.modelDir;
        const backend = req.backend ?? o.backend;
        if (modelDir !== undefined && typeof modelDir !== 'string') throw new RequestError('bad-argument', "'modelDir' must be a string");
        if (backend !== undefined && typeof backend !== 'string') throw new RequestError('bad-argument', "'backend' must be a string");
        const p = LaviRuntime.create({ modelDir: modelDir as string | undefined, backend: backend as string | undefined });
        loading = p;
        const next = await p.finally(() => (loading = null));
        rt?.dispose();
        rt = next;
        const info = rt.info();
        send({ id, type: 'loaded', backend: info.backend.name, modelDir: info.modelDir, mode: info.mode, parameters: info.parameters.total, config: info.config });
        return;
      }
      case 'ask': {
        if (active) throw new RequestError('busy', `request ${String(active.id)} is generating; one generation at a time (cancel it or wait)`);
        if (typeof req.question !== 'string') throw new RequestError('bad-argument', "'question' must be a string");
        if (req.image === undefined) throw new RequestError('bad-argument', "'image' is required");
        const image = imageArg(req.image);
        const opts = requestOptions(req);
        return generation(id, (signal, onToken) => rt!.ask(image, req.question as string, { ...opts, signal, onToken }));
      }
      case 'generate': {
        if (active) throw new RequestError('busy', `request ${String(active.id)} is generating; one generation at a time (cancel it or wait)`);
        const p = req.prompt;
        if (!(typeof p === 'string' || (Array.isArray(p) && p.every((x) => Number.isInteger(x))))) throw new RequestError('bad-argument', "'prompt' must be a string or an array of token ids");
        const opts = requestOptions(req);
        return generation(id, (signal, onToken) => rt!.generate(p as string | number[], { ...opts, signal, onToken }));
      }
      case 'cancel': {
        const found = active !== null && active.id === req.target;
        if (found) active!.ac.abort(`cancelled by request ${String(id)}`);
        send({ id, type: 'cancelled', target: req.target, found });
        return;
      }
      case 'info': {
        if (!rt) throw new RequestError('not-loaded', "no model loaded: send {type:'load'} first");
        send({ id, type: 'info', info: JSON.parse(JSON.stringify(rt.info())) });
        return;
      }
      case 'verify': {
        if (active) throw new RequestError('busy', 'a generation is running');
        const name = req.backend ?? (rt ? rt.backend.name : 'cpu');
        if (typeof name !== 'string') throw new RequestError('bad-argument', "'backend' must be a string");
        if (req.op !== undefined && typeof req.op !== 'string') throw new RequestError('bad-argument', "'op' must be a string (comma-separated op names)");
        const ac = new AbortController();
        active = { id, ac };
        try {
          const backend = await getBackend(name);
          const reference = await getBackend('cpu');
          const results = await verifyBackend({ backend, reference, ops: req.op ? (req.op as string).split(',') : undefined });
          const s = summarize(results);
          send({ id, type: 'verify', backend: name, summary: s, cases: results.length, failures: results.filter((r) => r.status === 'fail').map((r) => ({ name: r.name, reason: r.reason })) });
        } finally {
          active = null;
        }
        return;
      }
      case 'stats': {
        const m = process.memoryUsage();
        send({
          id,
          type: 'stats',
          backend: rt ? rt.backend.name : null,
          modelDir: rt ? rt.modelDir : null,
          memory: { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers },
          uptimeS: (Date.now() - t0) / 1000,
          requests: counts.requests,
          errors: counts.errors,
          frameErrors: counts.frameErrors,
          tokens: counts.tokens,
          busy: active !== null,
        });
        return;
      }
      case 'shutdown':
        send({ id, type: 'bye' });
        await finish(0);
        return;
      default:
        throw new RequestError('unknown-type', `unknown request type ${JSON.stringify(type)} (load, ask, generate, cancel, info, verify, stats, shutdown)`);
    }
  };

  const dispatch = (v: unknown) => {
    counts.requests++;
    if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
      sendError(undefined, 'bad-request', 'a request must be a map {id, type, ...}');
      return;
    }
    const req = v as Req;
    if (typeof req.type !== 'string') {
      sendError(req.id, 'bad-request', "a request needs a string 'type'");
      return;
    }
    handle(req).catch((e: unknown) => {
      const err = e as Error & { code?: unknown };
      const code = e instanceof RequestError ? e.code : typeof err?.code === 'string' ? err.code : 'internal';
      sendError(req.id, code, err?.message ?? String(e));
    });
  };

  const onData = (chunk: Buffer) => {
    if (closed) return;
    for (const ev of dec.push(chunk)) {
      if (ev.ok) dispatch(ev.value);
      else {
        counts.frameErrors++;
        sendError(undefined, ev.code, ev.message);
      }
      if (closed) return;
    }
    if (partialTimer) clearTimeout(partialTimer);
    partialTimer = null;
    if (dec.pending > 0) {
      partialTimer = setTimeout(() => {
        partialTimer = null;
        counts.frameErrors++;
        sendError(undefined, 'truncated-frame', `incomplete frame (${dec.pending} bytes buffered) not completed within ${o.frameTimeoutMs ?? 2000} ms; dropped`);
        dec.reset();
      }, o.frameTimeoutMs ?? 2000);
    }
  };
  const onEnd = () => {
    if (dec.pending > 0) sendError(undefined, 'truncated-frame', `input ended inside a frame (${dec.pending} bytes)`);
    void finish(0);
  };
  o.input.on('data', onData);
  o.input.on('end', onEnd);
  log('ready (length-prefixed msgpack on stdin/stdout)');
  return done;
}
