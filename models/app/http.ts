// `lavi serve --http`: an OpenAI-compatible HTTP server (the convention of llama.cpp's server, Ollama and vLLM),
// on node:http. See models/HTTP.md.
//
//   POST /v1/chat/completions   text and image_url parts (data: URLs; local files only under --allow-files),
//                               max_tokens, temperature, top_p, top_k, seed, stop, stream (server-sent events)
//   GET  /v1/models             the loaded model
//   GET  /health                {status: 'ok' | 'loading' | 'error'}
//
// One generation at a time; up to `queue` requests wait behind it, more get 503 with Retry-After. A client that
// disconnects cancels its generation (between tokens) or leaves the queue. Bodies are bounded (413), must be
// JSON (415 otherwise) and well formed (400 with an OpenAI-style error object). SIGTERM/SIGINT stop listening,
// cancel what runs, and exit 0. The model's own chat template renders the conversation; a LaVi checkpoint whose
// config has a '{question}' template (the bundled one) answers the last user text (and image) with ask().

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import { basename, isAbsolute, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LaviRuntime, type AskResult, type ImageSource, type RequestOptions } from './runtime.js';
import type { ChatContentPart, ChatMessage } from '../text/chat-template.js';

export interface HttpOptions {
  host?: string;
  port?: number;
  modelDir?: string;
  backend?: string;
  /** An already created runtime (tests, embedders); modelDir/backend are then ignored. */
  runtime?: LaviRuntime;
  /** image_url may name local files under this directory (absolute paths or file: URLs). Default: none. */
  allowFiles?: string;
  /** Largest request body in bytes (default 32 MiB). */
  maxBodyBytes?: number;
  /** Requests that may wait behind the running one (default 8). */
  queue?: number;
  /** Stop on SIGTERM/SIGINT (the CLI); embedders call close() themselves. */
  signals?: boolean;
  log?: (line: string) => void;
}

export interface HttpServer {
  server: Server;
  url: string;
  port: number;
  /** Resolves once the model is loaded (rejects when it cannot be). */
  ready: Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 32 * 1024 * 1024;
const DEFAULT_MAX_TOKENS = 2048;

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly type = 'invalid_request_error', readonly param: string | null = null, readonly code: string | null = null) {
    super(message);
  }
}

function errorBody(e: HttpError): string {
  return JSON.stringify({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
}

/** A LaviError code → HTTP status and OpenAI error code. */
function fromEngineError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  const err = e as Error & { code?: unknown };
  const code = typeof err?.code === 'string' ? err.code : null;
  const msg = err?.message ?? String(e);
  if (code === 'aborted') return new HttpError(499, msg); // the client left (or shutdown): nobody to answer
  if (code === 'prompt-too-long') return new HttpError(400, msg, 'invalid_request_error', 'messages', 'context_length_exceeded');
  if (code === 'value' || code === 'image' || code === 'chat-template' || code === 'model-dir') return new HttpError(400, msg, 'invalid_request_error', null, code);
  return new HttpError(500, msg, 'server_error', null, code);
}

// ---- request parsing ---------------------------------------------------------------------------------------

interface Parsed {
  model: string | null;
  messages: ChatMessage[];
  image: { url: string; param: string } | null;
  stream: boolean;
  includeUsage: boolean;
  maxTokens: number | null;
  sampling: RequestOptions;
  stop: string[];
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function optNumber(b: Record<string, unknown>, key: string, check: (n: number) => boolean, what: string): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new HttpError(400, `'${key}' must be ${what}`, 'invalid_request_error', key);
  return v;
}

function parseBody(b: unknown): Parsed {
  if (!isObj(b)) throw new HttpError(400, 'the request body must be a JSON object');
  if (b.model !== undefined && b.model !== null && typeof b.model !== 'string') throw new HttpError(400, "'model' must be a string", 'invalid_request_error', 'model');
  if (!Array.isArray(b.messages) || b.messages.length === 0) throw new HttpError(400, "'messages' must be a non-empty array", 'invalid_request_error', 'messages');
  if (b.messages.length > 4096) throw new HttpError(400, "'messages' has more than 4096 entries", 'invalid_request_error', 'messages');
  let image: Parsed['image'] = null;
  const messages: ChatMessage[] = b.messages.map((m, i): ChatMessage => {
    const where = `messages[${i}]`;
    if (!isObj(m)) throw new HttpError(400, `${where} must be an object`, 'invalid_request_error', where);
    if (typeof m.role !== 'string' || !['system', 'developer', 'user', 'assistant', 'tool'].includes(m.role)) {
      throw new HttpError(400, `${where}.role must be one of system, developer, user, assistant, tool`, 'invalid_request_error', `${where}.role`);
    }
    const role = m.role === 'developer' ? 'system' : m.role;
    const c = m.content;
    if (c === undefined || c === null) return { role, content: '' };
    if (typeof c === 'string') return { role, content: c };
    if (!Array.isArray(c)) throw new HttpError(400, `${where}.content must be a string or an array of parts`, 'invalid_request_error', `${where}.content`);
    const parts: ChatContentPart[] = c.map((p, j): ChatContentPart => {
      const pw = `${where}.content[${j}]`;
      if (!isObj(p) || typeof p.type !== 'string') throw new HttpError(400, `${pw} must be an object with a 'type'`, 'invalid_request_error', pw);
      if (p.type === 'text') {
        if (typeof p.text !== 'string') throw new HttpError(400, `${pw}.text must be a string`, 'invalid_request_error', `${pw}.text`);
        return { type: 'text', text: p.text };
      }
      if (p.type === 'image_url') {
        const iu = p.image_url;
        const url = typeof iu === 'string' ? iu : isObj(iu) && typeof iu.url === 'string' ? iu.url : null;
        if (url === null) throw new HttpError(400, `${pw}.image_url must be {url: string}`, 'invalid_request_error', `${pw}.image_url`);
        if (role !== 'user') throw new HttpError(400, `${pw}: images go in user messages`, 'invalid_request_error', pw);
        if (image) throw new HttpError(400, 'one image per request: this server passes a single image to the model', 'invalid_request_error', pw);
        image = { url, param: `${pw}.image_url` };
        return { type: 'image' };
      }
      throw new HttpError(400, `${pw}.type '${p.type}' is not supported (text, image_url)`, 'invalid_request_error', `${pw}.type`);
    });
    return { role, content: parts };
  });
  if (b.n !== undefined && b.n !== null && b.n !== 1) throw new HttpError(400, "only 'n': 1 is supported", 'invalid_request_error', 'n');
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw new HttpError(400, "'stream' must be a boolean", 'invalid_request_error', 'stream');
  const so = b.stream_options;
  if (so !== undefined && so !== null && !isObj(so)) throw new HttpError(400, "'stream_options' must be an object", 'invalid_request_error', 'stream_options');
  const isInt = Number.isInteger;
  const mt = optNumber(b, 'max_completion_tokens', (n) => isInt(n) && n >= 1, 'a positive integer') ?? optNumber(b, 'max_tokens', (n) => isInt(n) && n >= 1, 'a positive integer');
  const sampling: RequestOptions = {};
  const t = optNumber(b, 'temperature', (n) => n >= 0 && n <= 2, 'a number in [0, 2]');
  if (t !== undefined) sampling.temperature = t;
  const tp = optNumber(b, 'top_p', (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  if (tp !== undefined) sampling.topP = tp;
  const tk = optNumber(b, 'top_k', (n) => isInt(n) && n >= 0, 'a non-negative integer');
  if (tk !== undefined) sampling.topK = tk;
  const seed = optNumber(b, 'seed', (n) => isInt(n), 'an integer');
  if (seed !== undefined) sampling.seed = seed;
  let stop: string[] = [];
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop)) {
    if (b.stop.length > 16 || !b.stop.every((s) => typeof s === 'string')) throw new HttpError(400, "'stop' must be a string or an array of at most 16 strings", 'invalid_request_error', 'stop');
    stop = b.stop as string[];
  } else if (b.stop !== undefined && b.stop !== null) throw new HttpError(400, "'stop' must be a string or an array of strings", 'invalid_request_error', 'stop');
  stop = stop.filter((s) => s !== '');
  return {
    model: typeof b.model === 'string' ? b.model : null,
    messages,
    image,
    stream: b.stream === true,
    includeUsage: isObj(so) && so.include_usage === true,
    maxTokens: mt ?? null,
    sampling,
    stop,
  };
}

/** An image_url → image bytes: data: URLs always; local paths / file: URLs only under allowFiles. */
async function loadImageUrl(url: string, param: string, allowFiles: string | null): Promise<ImageSource> {
  const bad = (m: string) => new HttpError(400, m, 'invalid_request_error', param);
  if (url.startsWith('data:')) {
    const comma = url.indexOf(',');
    if (comma < 0) throw bad('malformed data: URL (no comma)');
    const meta = url.slice(5, comma);
    if (!/;base64$/i.test(meta)) throw bad('data: URLs must be base64 (data:image/png;base64,...)');
    const b64 = url.slice(comma + 1);
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64)) throw bad('the data: URL is not valid base64');
    const bytes = Buffer.from(b64, 'base64');
    if (bytes.length === 0) throw bad('the data: URL holds no bytes');
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  }
  if (/^https?:/i.test(url)) throw bad('remote image URLs are not fetched by this server; send the image as a data: URL');
  let path: string;
  if (url.startsWith('file:')) {
    try {
      path = fileURLToPath(url);
    } catch {
      throw bad('malformed file: URL');
    }
  } else path = url;
  if (!allowFiles) throw bad('local image files are not allowed (start the server with --allow-files DIR); send a data: URL');
  if (!isAbsolute(path)) path = resolve(allowFiles, path);
  const real = await realpath(path).catch(() => null);
  if (real === null) throw bad(`image file not found under the allowed directory`);
  if (real !== allowFiles && !real.startsWith(allowFiles.endsWith(sep) ? allowFiles : allowFiles + sep)) throw bad('the image file is outside the directory given with --allow-files');
  const st = await stat(real);
  if (!st.isFile()) throw bad('the image path is not a file');
  if (st.size > 64 * 1024 * 1024) throw bad('the image file is larger than 64 MiB');
  return new Uint8Array(await readFile(real));
}

// ---- stop strings ------------------------------------------------------------------------------------------

/** Streams text while watching for stop strings: emits only what cannot be the start of a stop string. */
class StopWatcher {
  text = '';
  private emitted = 0;
  hit = false;
  constructor(private readonly stops: string[]) {}

  /** Adds text; returns the newly safe text (and sets `hit` when a stop string appeared). */
  push(t: string): string {
    if (this.hit) return '';
    this.text += t;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, Math.max(0, this.emitted - s.length));
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.hit = true;
      this.text = this.text.slice(0, cut);
      return this.take(this.text.length);
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.text.length); k > hold; k--) {
        if (this.text.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return this.take(this.text.length - hold);
  }

  /** Whatever was held back (at the end of generation). */
  flush(): string {
    return this.take(this.text.length);
  }

  private take(upto: number): string {
    if (upto <= this.emitted) return '';
    const out = this.text.slice(this.emitted, upto);
    this.emitted = upto;
    return out;
  }
}

// ---- the server --------------------------------------------------------------------------------------------

export async function startHttpServer(o: HttpOptions = {}): Promise<HttpServer> {
  const log = o.log ?? ((l: string) => process.stderr.write(`lavi serve: ${l}\n`));
  const maxBody = o.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const queueMax = o.queue ?? 8;
  const allowFiles = o.allowFiles ? await realpath(resolve(o.allowFiles)) : null;
  const created = Math.floor(Date.now() / 1000);
  let rt: LaviRuntime | null = o.runtime ?? null;
  let status: 'loading' | 'ok' | 'error' = rt ? 'ok' : 'loading';
  let loadError = '';
  let modelId = rt ? basename(rt.modelDir) : o.modelDir ? basename(resolve(o.modelDir)) : 'lavi-vqa';
  const ready: Promise<void> = rt
    ? Promise.resolve()
    : LaviRuntime.create({ modelDir: o.modelDir, backend: o.backend }).then(
        (r) => {
          rt = r;
          status = 'ok';
          modelId = basename(r.modelDir);
        },
        (e: unknown) => {
          status = 'error';
          loadError = (e as Error)?.message ?? String(e);
          throw e;
        },
      );
  ready.catch(() => undefined);

  // One generation at a time; a bounded line of waiters.
  let running = false;
  const waiting: { go: () => void; cancelled: boolean }[] = [];
  const active = new Set<AbortController>();
  let closing = false;
  const acquire = (signal: AbortSignal): Promise<void> | null => {
    if (!running) {
      running = true;
      return Promise.resolve();
    }
    if (waiting.length >= queueMax) return null;
    return new Promise<void>((res, rej) => {
      const w = { go: res, cancelled: false };
      waiting.push(w);
      signal.addEventListener('abort', () => {
        w.cancelled = true;
        const i = waiting.indexOf(w);
        if (i >= 0) waiting.splice(i, 1);
        rej(new HttpError(499, 'client closed the request'));
      }, { once: true });
    });
  };
  const release = () => {
    const next = waiting.shift();
    if (next) next.go();
    else running = false;
  };

  const sendJson = (res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.headersSent) return;
    const s = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(s), ...headers });
    res.end(s);
  };
  const sendError = (res: ServerResponse, e: HttpError, headers: Record<string, string> = {}) => sendJson(res, e.status, errorBody(e), headers);

  /** Reads the body up to maxBody. A larger body is refused with 413: read to its end and discarded while it
   *  stays under discardCap (so that the client, still sending, gets the answer instead of a reset), answered at
   *  once (and the connection closed) beyond that. */
  const discardCap = Math.min(Math.max(4 * maxBody, 1 << 20), 256 * 1024 * 1024);
  const readBody = (req: IncomingMessage): Promise<Buffer> =>
    new Promise((res, rej) => {
      const declared = Number(req.headers['content-length']);
      const tooBig = () => new HttpError(413, `request body${Number.isFinite(declared) ? ` of ${declared} bytes` : ''} exceeds the limit of ${maxBody} bytes`);
      if (Number.isFinite(declared) && declared > discardCap) {
        rej(tooBig());
        return;
      }
      const chunks: Buffer[] = [];
      let n = 0;
      let done = false;
      req.on('data', (c: Buffer) => {
        if (done) return;
        n += c.length;
        if (n > discardCap) {
          done = true;
          chunks.length = 0;
          rej(tooBig());
          return;
        }
        if (n > maxBody) chunks.length = 0;
        else chunks.push(c);
      });
      req.on('end', () => {
        if (done) return;
        done = true;
        if (n > maxBody) rej(Object.assign(tooBig(), { drained: true }));
        else res(Buffer.concat(chunks));
      });
      req.on('error', (e) => {
        if (!done) {
          done = true;
          rej(new HttpError(400, `request body: ${e.message}`));
        }
      });
      req.on('aborted', () => {
        if (!done) {
          done = true;
          rej(new HttpError(499, 'client closed the request'));
        }
      });
    });

  const completions = async (req: IncomingMessage, res: ServerResponse) => {
    const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (ct !== 'application/json') throw new HttpError(415, `Content-Type must be application/json, got '${ct || 'none'}'`);
    const raw = await readBody(req);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      throw new HttpError(400, `the body is not valid JSON (${(e as Error).message})`);
    }
    const p = parseBody(body);
    if (closing) throw new HttpError(503, 'the server is shutting down', 'server_error');
    if (status === 'loading') await ready.catch(() => undefined);
    if (!rt) throw new HttpError(503, `no model loaded (${loadError || status})`, 'server_error');
    const runtime = rt;
    const info = runtime.info();
    if (p.image && info.config.imageSize === 0) {
      throw new HttpError(400, `model '${modelId}' (${info.family}) is text-only: it takes no image parts`, 'invalid_request_error', p.image.param);
    }
    const image = p.image ? await loadImageUrl(p.image.url, p.image.param, allowFiles) : null;

    // The prompt: the bundled LaVi's '{question}' template takes the last user text; other models render the
    // conversation with their chat template. Tokenised here, so the default max_tokens can fill the context.
    const legacy = info.chatTemplate !== null && info.chatTemplate.includes('{question}');
    let ids: number[];
    if (legacy) {
      const lastUser = [...p.messages].reverse().find((m) => m.role === 'user');
      const c = lastUser?.content;
      const text = typeof c === 'string' ? c : Array.isArray(c) ? c.filter((x) => x.type === 'text').map((x) => (x as { text: string }).text).join('\n') : '';
      if (text.trim() === '') throw new HttpError(400, 'no user text to answer', 'invalid_request_error', 'messages');
      ids = runtime.encodePrompt(text, image !== null);
    } else {
      ids = runtime.encodeChat(p.messages);
    }
    const visual = image && info.mode === 'concat' ? info.config.visualTokensPerImage : 0;
    const room = info.config.maxPositionEmbeddings - ids.length - visual;
    const maxNewTokens = p.maxTokens ?? Math.max(1, Math.min(DEFAULT_MAX_TOKENS, room));

    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort(new Error('client disconnected'));
    };
    res.on('close', onClose);
    const slot = acquire(ac.signal);
    if (slot === null) throw new HttpError(503, `busy: one generation runs and ${queueMax} wait; retry shortly`, 'server_error', null, 'overloaded');
    await slot;
    active.add(ac);
    const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
    const model = p.model ?? modelId;
    const stops = new StopWatcher(p.stop);
    let started = false;
    const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model, system_fingerprint: null, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra })}\n\n`;
    const startStream = () => {
      if (started) return;
      started = true;
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
      res.write(chunk({ role: 'assistant', content: '' }, null));
    };
    let leading = true;
    const emit = (text: string) => {
      if (leading) {
        text = text.trimStart();
        if (text) leading = false;
      }
      if (text && p.stream && !res.destroyed) res.write(chunk({ content: text }, null));
    };
    let r: AskResult;
    try {
      if (p.stream) startStream();
      r = await runtime.generate(ids, {
        ...p.sampling,
        modelDefaults: true,
        maxNewTokens,
        image,
        signal: ac.signal,
        onToken: (text) => {
          emit(stops.push(text));
          if (stops.hit && !ac.signal.aborted) ac.abort(new Error('stop string'));
        },
      });
    } catch (e) {
      if (started) {
        const he = fromEngineError(e);
        if (!res.destroyed) res.end(`data: ${errorBody(he)}\n\ndata: [DONE]\n\n`);
        return;
      }
      throw e;
    } finally {
      active.delete(ac);
      release();
    }
    if (res.destroyed || (r.stopReason === 'aborted' && !stops.hit)) return; // the client left, or shutdown
    if (!stops.hit) emit(stops.flush());
    const finish = stops.hit || r.stopReason === 'stop' ? 'stop' : 'length';
    const completionTokens = r.tokens.length - (r.stopReason === 'stop' ? 1 : 0);
    const usage = { prompt_tokens: r.contextTokens, completion_tokens: completionTokens, total_tokens: r.contextTokens + completionTokens };
    if (p.stream) {
      res.write(chunk({}, finish));
      if (p.includeUsage) res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model, system_fingerprint: null, choices: [], usage })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    const content = stops.hit ? stops.text.trim() : r.answer;
    sendJson(res, 200, {
      id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model,
      system_fingerprint: null,
      choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: finish }],
      usage,
    });
  };

  const server = createServer({ requestTimeout: 300_000, headersTimeout: 30_000, maxHeaderSize: 16384 }, (req, res) => {
    const url = (req.url ?? '/').split('?')[0]!;
    const route = async () => {
      if (url === '/health' || url === '/v1/health') {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} ${url}: use GET`);
        sendJson(res, status === 'ok' ? 200 : 503, { status, model: modelId, ...(status === 'error' ? { error: loadError } : {}) });
        return;
      }
      if (url === '/v1/models' || url === '/models') {
        if (req.method !== 'GET') throw new HttpError(405, `${req.method} ${url}: use GET`);
        sendJson(res, 200, { object: 'list', data: [{ id: modelId, object: 'model', created, owned_by: 'lavi' }] });
        return;
      }
      if (url === '/v1/chat/completions' || url === '/chat/completions') {
        if (req.method !== 'POST') throw new HttpError(405, `${req.method} ${url}: use POST`);
        await completions(req, res);
        return;
      }
      throw new HttpError(404, `no route ${req.method} ${url} (POST /v1/chat/completions, GET /v1/models, GET /health)`, 'invalid_request_error', null, 'not_found');
    };
    route().catch((e: unknown) => {
      const he = fromEngineError(e);
      if (he.status === 499) return;
      if (he.status >= 500 && he.status !== 503) log(`error: ${he.message}`);
      const headers: Record<string, string> = he.status === 503 ? { 'Retry-After': '1' } : {};
      // A refused body may still be arriving: answer, then close the connection rather than read it all.
      if (!req.complete && !(he as { drained?: boolean }).drained) headers.Connection = 'close';
      if (res.headersSent) {
        if (!res.writableEnded) res.end();
        return;
      }
      sendError(res, he, headers);
      if (headers.Connection === 'close') {
        // Let a client that is still sending finish its write and read the answer (clients fail on a reset),
        // discarding the rest of the body; a client that keeps sending is cut off after 10 s.
        req.resume();
        const t = setTimeout(() => req.socket.destroy(), 10_000);
        t.unref();
        req.socket.once('close', () => clearTimeout(t));
      }
    });
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(o.port ?? 8080, o.host ?? '127.0.0.1', () => {
      server.off('error', rej);
      res();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (o.port ?? 8080);
  const host = o.host ?? '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  const close = async () => {
    if (closing) return;
    closing = true;
    for (const w of waiting.splice(0)) w.cancelled = true;
    for (const ac of active) ac.abort(new Error('server shutting down'));
    await new Promise<void>((r) => {
      server.close(() => r());
      server.closeIdleConnections?.();
      setTimeout(() => server.closeAllConnections?.(), 2000).unref();
    });
    if (!o.runtime) {
      await ready.catch(() => undefined);
      rt?.dispose();
    }
  };
  return { server, url, port, ready, close };
}

/** The CLI's `lavi serve --http`: serves until SIGTERM/SIGINT; resolves with the exit code. */
export async function serveHttp(o: HttpOptions): Promise<number> {
  const log = o.log ?? ((l: string) => process.stderr.write(`lavi serve: ${l}\n`));
  const s = await startHttpServer({ ...o, log });
  log(`listening on ${s.url} (OpenAI-compatible: POST /v1/chat/completions, GET /v1/models, GET /health)`);
  log(`loading ${o.modelDir ?? 'the bundled model'} on ${o.backend ?? 'the best backend'}…`);
  let loadFailed = false;
  await s.ready.then(
    () => log('model loaded; ready'),
    (e: unknown) => {
      loadFailed = true;
      log(`could not load the model: ${(e as Error)?.message ?? String(e)}`);
    },
  );
  if (loadFailed) {
    await s.close();
    return 1;
  }
  return new Promise<number>((resolveExit) => {
    const stop = (sig: string) => {
      log(`${sig}: shutting down`);
      s.close().then(() => resolveExit(0), () => resolveExit(1));
    };
    if (o.signals) {
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    }
  });
}
