// The engine's dedicated worker: loads the LaVi checkpoint over fetch (WebRuntime), answers questions with
// streamed tokens, and runs the conformance table on a backend against the CPU reference. See protocol.ts.

import { getBackend, verifyBackend, decodeImage, WebRuntime, type CaseResult } from '../../../browser.js';
import type { AskDone, LoadedInfo, Reply, Request, VerifyRow } from './protocol.js';

const post = (m: Reply) => (self as unknown as { postMessage(m: Reply): void }).postMessage(m);
let runtime: WebRuntime | null = null;

function message(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

async function backendFor(name: string) {
  try {
    return await getBackend(name);
  } catch (e) {
    if (name === 'webgpu') throw new Error(`WebGPU is not available in this browser: ${message(e)}`);
    throw e;
  }
}

function row(r: CaseResult): VerifyRow {
  const m = /first mismatch at (\d+): got (\S+), want (\S+)|element (\d+) off by .*?: got (\S+), want (\S+)/.exec(r.reason);
  const first = m ? `[${m[1] ?? m[4]}] got ${m[2] ?? m[5]}, want ${(m[3] ?? m[6])!.replace(/[,)]$/, '')}` : '';
  return { op: r.op, name: r.name, status: r.status, nmse: r.nmse, threshold: r.threshold, firstMismatch: first, reason: r.reason };
}

async function handle(req: Request): Promise<unknown> {
  switch (req.type) {
    case 'load': {
      runtime?.dispose();
      runtime = null;
      const backend = await backendFor(req.backend);
      const rt = await WebRuntime.load(req.modelUrl, {
        backend,
        wholeFileBytes: req.wholeFileBytes,
        onProgress: (p) => post({ id: req.id, type: 'progress', loaded: p.loaded, total: p.total }),
      });
      runtime = rt;
      const info = rt.info();
      const out: LoadedInfo = {
        backend: info.backend.name,
        description: info.backend.description,
        loadMs: info.loadMs,
        bytesRead: info.bytesRead,
        weightBytes: info.weightBytes,
        crossOriginIsolated: (self as unknown as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
      };
      return out;
    }
    case 'decode': {
      const img = decodeImage(req.bytes, { source: req.name });
      return { width: img.width, height: img.height };
    }
    case 'ask': {
      if (!runtime) throw new Error('load the model first');
      const img = decodeImage(req.bytes, { source: req.name });
      const r = await runtime.ask(img, req.question, { maxNewTokens: req.maxNewTokens, onToken: (text) => post({ id: req.id, type: 'token', text }) });
      const out: AskDone = { answer: r.answer, tokens: r.tokens.length, ttftMs: r.timings.ttftMs, tokensPerSecond: r.timings.tokensPerSecond, totalMs: r.timings.totalMs };
      return out;
    }
    case 'askMany': {
      if (!runtime) throw new Error('load the model first');
      const answers: string[] = [];
      for (const it of req.items) answers.push((await runtime.ask(it.bytes, it.question)).answer);
      return answers;
    }
    case 'verify': {
      const backend = await backendFor(req.backend);
      const reference = await getBackend('cpu');
      const rows: VerifyRow[] = [];
      await verifyBackend({ backend, reference, mode: 'test', ops: req.ops }, (r) => {
        const x = row(r);
        rows.push(x);
        post({ id: req.id, type: 'case', row: x });
      });
      return { backend: backend.name, description: backend.info().description, rows };
    }
  }
}

(self as unknown as { onmessage: (e: { data: Request }) => void }).onmessage = (e) => {
  const req = e.data;
  handle(req).then(
    (value) => post({ id: req.id, type: 'result', value }),
    (err) => post({ id: req.id, type: 'error', message: message(err) }),
  );
};
