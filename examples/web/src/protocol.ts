// Messages between a page (app.ts, verify.ts) and the engine's dedicated worker (engine-worker.ts). The engine never
// runs on the window's main thread: the wasm backend's threads block with Atomics.wait, which a window may not do,
// and a long matmul would freeze the page.

export type Request =
  | { id: number; type: 'load'; modelUrl: string; backend: string; wholeFileBytes?: number }
  | { id: number; type: 'decode'; bytes: Uint8Array; name: string }
  | { id: number; type: 'ask'; bytes: Uint8Array; name: string; question: string; maxNewTokens?: number }
  | { id: number; type: 'askMany'; items: { bytes: Uint8Array; question: string }[] }
  | { id: number; type: 'verify'; backend: string; ops?: string[] };

export interface LoadedInfo {
  backend: string;
  description: string;
  loadMs: number;
  bytesRead: number;
  weightBytes: number;
  crossOriginIsolated: boolean;
}

export interface AskDone {
  answer: string;
  tokens: number;
  ttftMs: number;
  tokensPerSecond: number;
  totalMs: number;
}

export interface VerifyRow {
  op: string;
  name: string;
  status: string;
  nmse: number | null;
  threshold: number;
  firstMismatch: string;
  reason: string;
}

export type Reply =
  | { id: number; type: 'progress'; loaded: number; total: number }
  | { id: number; type: 'token'; text: string }
  | { id: number; type: 'case'; row: VerifyRow }
  | { id: number; type: 'result'; value: unknown }
  | { id: number; type: 'error'; message: string };
