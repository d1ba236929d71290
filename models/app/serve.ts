// The stdio server behind `lavi serve --stdio`: length-prefixed msgpack frames in, frames out. See
// models/PROTOCOL.md for the protocol. Also exports the framing (FrameDecoder, encodeFrame) that traces use.
//
// Robustness: a frame whose length prefix exceeds maxFrameBytes is rejected before anything is allocated; a
// frame that does not decode, or a partial frame left incomplete for frameTimeoutMs, is answered with an error
// and all buffered input is dropped (the host resends). One generation (ask/generate/verify) runs at a time;
// another one arriving meanwhile is rejected with code 'busy' (memory stays bounded: no queue). Every frame body
// is scanned before it is decoded (scanMsgpack): nesting deeper than MAX_DEPTH, more than MAX_ITEMS values, or a
// msgpack extension type is refused with 'bad-request', so no request can blow the stack (echoing a deep id) or
// expand a small frame into a huge object graph. Prompts are bounded in characters before they are tokenised.

import type { Readable, Writable } from 'node:stream';
import { Packr } from 'msgpackr';
import '../../backends/index.js';
import { getBackend } from '../../core/registry.js';
import { verifyBackend, summarize } from '../../backends/conformance/index.js';
import { LaviRuntime, type AskResult, type ImageSource, type RequestOptions, type RuntimeInfo } from './runtime.js';
import { WorkerRuntime } from './worker.js';

/** The loaded model: in a worker thread (the CLI: tokenising and every kernel stay off the event loop that reads
 *  frames, so stats and cancel are answered during a long prefill) or in-process. */
interface Loaded {
  rt: LaviRuntime | WorkerRuntime;
  info: RuntimeInfo;
}

export const DEFAULT_MAX_FRAME = 32 * 1024 * 1024;

/** msgpack without msgpackr's record extension, so any msgpack library (Python's msgpack) can read it. */
export const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** The server's replies: an undefined field is written as nil (msgpackr would use an extension type). */
const replyPackr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', encodeUndefinedAsNil: true });

/** 4-byte big-endian length + msgpack body (`plain`: undefined as nil, no extension types). */
export function encodeFrame(value: unknown, plain = false): Buffer {
  const body = (plain ? replyPackr : packr).pack(value);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

export type FrameEvent = { ok: true; value: unknown } | { ok: false; code: string; message: string };

/** Deepest nesting a request may have (a request map is depth 1; {image: {data}} is 2). */
export const MAX_DEPTH = 16;
/** Most msgpack values (scalars, strings, containers) one request may hold. */
export const MAX_ITEMS = 1 << 18;

export interface ScanLimits {
  maxDepth?: number;
  maxItems?: number;
  /** Let extension types through (trace files, written by msgpackr itself). Default false. */
  allowExtensions?: boolean;
}

/** Walks one msgpack value in `buf` without building it (iteratively: no recursion, no allocation per value) and
 *  says why it must not be decoded: null when it is one well-formed value within the limits. */
export function scanMsgpack(buf: Uint8Array, limits: ScanLimits = {}): { code: string; message: string } | null {
  const maxDepth = limits.maxDepth ?? MAX_DEPTH;
  const allowExt = limits.allowExtensions ?? false;
  const maxItems = limits.maxItems ?? MAX_ITEMS;
  const n = buf.length;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const stack: number[] = []; // values still expected in each open container
  let pos = 0, items = 0;
  const bad = (m: string) => ({ code: 'bad-frame', message: `frame body is not valid msgpack (${m}); input buffer dropped` });
  for (;;) {
    if (pos >= n) return bad(`truncated at byte ${pos}`);
    const b = buf[pos++]!;
    if (++items > maxItems) return { code: 'bad-request', message: `request holds more than ${maxItems} values` };
    let skip = 0, children = 0;
    const need = (k: number): number | null => (pos + k <= n ? k : null);
    const u = (k: 1 | 2 | 4): number | null => {
      if (need(k) === null) return null;
      const v = k === 1 ? buf[pos]! : k === 2 ? dv.getUint16(pos) : dv.getUint32(pos);
      pos += k;
      return v;
    };
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) skip = 0;
    else if (b <= 0x8f) children = 2 * (b & 0x0f);
    else if (b <= 0x9f) children = b & 0x0f;
    else if (b <= 0xbf) skip = b & 0x1f;
    else if (b === 0xc1) return bad('byte 0xc1 is never used');
    else if (b >= 0xc4 && b <= 0xc6) { const l = u(b === 0xc4 ? 1 : b === 0xc5 ? 2 : 4); if (l === null) return bad('truncated length'); skip = l; }
    else if (allowExt && b >= 0xd4 && b <= 0xd8) skip = 1 + (1 << (b - 0xd4));
    else if (allowExt && b >= 0xc7 && b <= 0xc9) { const l = u(b === 0xc7 ? 1 : b === 0xc8 ? 2 : 4); if (l === null) return bad('truncated length'); skip = l + 1; }
    else if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8)) return { code: 'bad-request', message: `msgpack extension types are not accepted (type byte 0x${b.toString(16)} at ${pos - 1})` };
    else if (b === 0xca) skip = 4;
    else if (b === 0xcb) skip = 8;
    else if (b >= 0xcc && b <= 0xcf) skip = 1 << (b - 0xcc);
    else if (b >= 0xd0 && b <= 0xd3) skip = 1 << (b - 0xd0);
    else if (b >= 0xd9 && b <= 0xdb) { const l = u(b === 0xd9 ? 1 : b === 0xda ? 2 : 4); if (l === null) return bad('truncated length'); skip = l; }
    else if (b === 0xdc || b === 0xdd) { const l = u(b === 0xdc ? 2 : 4); if (l === null) return bad('truncated length'); children = l; }
    else { const l = u(b === 0xde ? 2 : 4); if (l === null) return bad('truncated length'); children = 2 * l; }
    if (skip) {
      if (pos + skip > n) return bad(`a value of ${skip} bytes runs past the end of the frame`);
      pos += skip;
    }
    if (children > 0) {
      if (children > n - pos) return bad(`a container of ${children} values cannot fit in the ${n - pos} bytes left`);
      if (stack.length + 1 > maxDepth) return { code: 'bad-request', message: `request nested deeper than ${maxDepth} levels` };
      stack.push(children);
      continue;
    }
    // A complete value: close every container it completes.
    while (stack.length && --stack[stack.length - 1]! === 0) stack.pop();
    if (stack.length === 0) return pos === n ? null : bad(`${n - pos} bytes after the value`);
  }
}

/** Incremental frame decoder: push chunks, get decoded bodies or framing errors. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME, private readonly limits: ScanLimits = {}) {}

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
      const refused = len === 0 ? { code: 'bad-frame', message: 'frame body is not valid msgpack (empty body); input buffer dropped' } : scanMsgpack(body, this.limits);
      if (refused?.code === 'bad-request') {
        // Well framed but too deep / too big / an extension: refuse it and keep the stream (the length was right).
        events.push({ ok: false, ...refused });
        continue;
      }
      try {
        if (refused) throw new Error(refused.message);
        value = packr.unpack(body);
      } catch (e) {
        this.reset();
        events.push({ ok: false, code: 'bad-frame', message: refused ? refused.message : `frame body is not valid msgpack (${(e as Error).message}); input buffer dropped` });
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
  /** With modelDir/backend: end (exit code 1) when the start-up load fails, instead of serving without a model. */
  exitOnLoadError?: boolean;
  /** Run the model in a worker thread (default true). */
  worker?: boolean;
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
  let rt: Loaded | null = null;
  let lastLoad: { modelDir?: string; backend?: string } | null = null;
  let loading: Promise<unknown> | null = null;
  let active: { id: unknown; ac: AbortController } | null = null;
  let closed = false;
  let partialTimer: NodeJS.Timeout | null = null;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  const send = (v: Record<string, unknown>) => {
    if (closed) return;
    o.output.write(encodeFrame(v, true));
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
    await rt?.rt.dispose();
    rt = null;
    resolveDone(code);
  };

  let loadError: string | null = null;
  /** The loaded runtime, once a load in progress (the start-up one) has finished. */
  const ready = async (): Promise<Loaded> => {
    if (loading) await loading.catch(() => undefined);
    if (!rt) throw new RequestError('not-loaded', loadError ? `no model loaded (${loadError}); send {type:'load'}` : "no model loaded: send {type:'load'} first");
    return rt;
  };

  const load = async (modelDir: string | undefined, backend: string | undefined): Promise<Loaded> => {
    lastLoad = { modelDir, backend };
    const p = (async (): Promise<Loaded> => {
      if (o.worker ?? true) {
        const w = await WorkerRuntime.create({ modelDir, backend });
        return { rt: w, info: await w.info() };
      }
      const r = await LaviRuntime.create({ modelDir, backend });
      return { rt: r, info: r.info() };
    })();
    loading = p;
    try {
      const next = await p;
      const old = rt;
      rt = next;
      await old?.rt.dispose();
      loadError = null;
      return next;
    } catch (e) {
      loadError = (e as Error)?.message ?? String(e);
      throw e;
    } finally {
      if (loading === p) loading = null;
    }
  };

  /** Runs one generation: waits for a load in progress, refuses a prompt that cannot fit before tokenising it,
   *  streams tokens, and ends with 'done' — also when a cancel arrived before the first token (stopReason
   *  'aborted', no tokens), as models/PROTOCOL.md promises. */
  const generation = async (
    id: unknown,
    promptText: string | null,
    maxNew: number | undefined,
    run: (rt: LaviRuntime | WorkerRuntime, signal: AbortSignal, onToken: (text: string, token: number) => void) => Promise<AskResult>,
  ) => {
    const ac = new AbortController();
    active = { id, ac };
    try {
      const loaded = await ready();
      const runtime = loaded.rt;
      // In-process: refuse a prompt that cannot fit before tokenising it (the worker's runtime does the same).
      if (promptText !== null && runtime instanceof LaviRuntime) runtime.checkPromptLength(promptText, maxNew ?? 64);
      let r: AskResult;
      try {
        r = await run(runtime, ac.signal, (text, token) => {
          counts.tokens++;
          send({ id, type: 'token', text, token });
        });
      } catch (e) {
        if (/LaVi worker exited/.test((e as Error)?.message ?? '') && rt === loaded && lastLoad) {
          // The model's worker died (out of memory, a native crash): reload it for the next request.
          rt = null;
          log(`the model's worker exited; reloading`);
          load(lastLoad.modelDir, lastLoad.backend).catch((err: unknown) => log(`reload failed: ${(err as Error)?.message ?? String(err)}`));
        }
        if (!(ac.signal.aborted && (e as { code?: unknown })?.code === 'aborted')) throw e;
        const zero = { imageMs: 0, encodeMs: 0, prefillMs: 0, ttftMs: 0, decodeMs: 0, totalMs: 0, tokensPerSecond: 0 };
        r = { answer: '', tokens: [], stopReason: 'aborted', promptTokens: 0, visualTokens: 0, contextTokens: 0, timings: zero };
      }
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
        if (loading) await loading.catch(() => undefined);
        const next = await load(modelDir as string | undefined, backend as string | undefined);
        const info = next.info;
        send({ id, type: 'loaded', backend: info.backend.name, modelDir: info.modelDir, mode: info.mode, parameters: info.parameters.total, config: info.config });
        return;
      }
      case 'ask': {
        if (active) throw new RequestError('busy', `request ${String(active.id)} is generating; one generation at a time (cancel it or wait)`);
        if (typeof req.question !== 'string') throw new RequestError('bad-argument', "'question' must be a string");
        if (req.image === undefined) throw new RequestError('bad-argument', "'image' is required");
        const image = imageArg(req.image);
        const opts = requestOptions(req);
        return generation(id, req.question, opts.maxNewTokens, (r, signal, onToken) => r.ask(image, req.question as string, { ...opts, signal, onToken }));
      }
      case 'generate': {
        if (active) throw new RequestError('busy', `request ${String(active.id)} is generating; one generation at a time (cancel it or wait)`);
        const p = req.prompt;
        if (!(typeof p === 'string' || (Array.isArray(p) && p.every((x) => Number.isInteger(x))))) throw new RequestError('bad-argument', "'prompt' must be a string or an array of token ids");
        const opts = requestOptions(req);
        if (Array.isArray(p) && p.length > MAX_ITEMS) throw new RequestError('prompt-too-long', `prompt of ${p.length} token ids`);
        return generation(id, typeof p === 'string' ? p : null, opts.maxNewTokens, (r, signal, onToken) => r.generate(p as string | number[], { ...opts, signal, onToken }));
      }
      case 'cancel': {
        const found = active !== null && active.id === req.target;
        if (found) active!.ac.abort(`cancelled by request ${String(id)}`);
        send({ id, type: 'cancelled', target: req.target, found });
        return;
      }
      case 'info': {
        const r = await ready();
        send({ id, type: 'info', info: JSON.parse(JSON.stringify(r.rt instanceof LaviRuntime ? r.rt.info() : await r.rt.info())) });
        return;
      }
      case 'verify': {
        if (active) throw new RequestError('busy', 'a generation is running');
        const name = req.backend ?? (rt ? rt.info.backend.name : 'cpu');
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
          backend: rt ? rt.info.backend.name : null,
          modelDir: rt ? rt.info.modelDir : null,
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
  if (o.modelDir !== undefined || o.backend !== undefined) {
    // --model / --backend: load at start-up; requests that need the model wait for it.
    log(`loading ${o.modelDir ?? 'the bundled model'} on ${o.backend ?? 'the best backend'}…`);
    load(o.modelDir, o.backend).then(
      (r) => {
        const i = r.info;
        log(`loaded ${i.modelDir} (${i.family}, ${i.mode}, ${i.parameters.total} parameters) on ${i.backend.name}`);
      },
      (e: unknown) => {
        log(`could not load the model: ${(e as Error)?.message ?? String(e)}`);
        if (o.exitOnLoadError) void finish(1);
      },
    );
  }
  log('ready (length-prefixed msgpack on stdin/stdout)');
  return done;
}
