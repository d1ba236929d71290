// The worker side of WorkerRuntime (models/worker.ts): owns one LaviRuntime in a worker_threads worker and
// answers the parent's messages. Protocol (structured clone, not msgpack):
//   parent → worker: {type:'ask'|'generate', id, image?, question?, prompt?, opts} | {type:'cancel', id, reason?}
//                    | {type:'info', id} | {type:'dispose', id}
//   worker → parent: {type:'ready'} | {type:'token', id, text, token} | {type:'result', id, value}
//                    | {type:'error', id?, error:{name, message, code?, stack?}}
// The runtime options come as workerData: {opts, preload}.

import { parentPort, workerData } from 'node:worker_threads';
import { LaviRuntime, type RequestOptions, type RuntimeOptions } from './runtime.js';

export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, message: e.message, code: typeof code === 'string' ? code : undefined, stack: e.stack };
  }
  return { name: 'Error', message: String(e) };
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('worker_entry: not running in a worker');
  const { opts, preload } = workerData as { opts: RuntimeOptions; preload?: string[] };
  let rt: LaviRuntime;
  try {
    for (const m of preload ?? []) await import(m);
    rt = await LaviRuntime.create(opts);
  } catch (e) {
    port.postMessage({ type: 'error', error: serializeError(e) });
    return;
  }
  const controllers = new Map<number, AbortController>();
  const running = new Set<Promise<unknown>>();
  port.postMessage({ type: 'ready', info: rt.info() });
  port.on('message', (msg: { type: string; id: number; image?: never; question?: string; prompt?: string | number[]; opts?: RequestOptions; reason?: string }) => {
    const { id } = msg;
    switch (msg.type) {
      case 'ask':
      case 'generate': {
        const ac = new AbortController();
        controllers.set(id, ac);
        const o: RequestOptions = { ...msg.opts, signal: ac.signal, onToken: (text, token) => port.postMessage({ type: 'token', id, text, token }) };
        const p = msg.type === 'ask' ? rt.ask(msg.image!, msg.question!, o) : rt.generate(msg.prompt!, o);
        const done = p.then(
          (value) => {
            if (value.abortReason !== undefined) value.abortReason = String(value.abortReason);
            port.postMessage({ type: 'result', id, value });
          },
          (e) => port.postMessage({ type: 'error', id, error: serializeError(e) }),
        ).finally(() => {
          controllers.delete(id);
          running.delete(done);
        });
        running.add(done);
        break;
      }
      case 'cancel':
        controllers.get(id)?.abort(msg.reason ?? 'cancelled');
        break;
      case 'info':
        port.postMessage({ type: 'result', id, value: rt.info() });
        break;
      case 'dispose':
        // Cancel what runs, let it stop between tokens, then free the model.
        for (const ac of controllers.values()) ac.abort('disposed');
        void Promise.allSettled([...running]).then(() => {
          rt.dispose();
          port.postMessage({ type: 'result', id, value: null });
        });
        break;
      default:
        port.postMessage({ type: 'error', id, error: { name: 'ValueError', message: `worker: unknown message type '${msg.type}'` } });
    }
  });
}

void main();
