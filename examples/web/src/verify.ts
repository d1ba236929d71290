// "Verify this device": the conformance table on the browser's WebGPU and on wasm, against the CPU reference.
// URL parameters: ?run=webgpu,wasm starts those at once (the tests use it); &ops=matmul,softmax limits the ops.

import { EngineClient } from './client.js';
import type { VerifyRow } from './protocol.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const client = new EngineClient((why) => {
  const f = $('fatal');
  f.hidden = false;
  f.textContent = why;
});
const running = new Set<string>();

function fmt(x: number | null): string {
  return x === null ? '—' : x === 0 ? '0' : x.toExponential(1);
}

async function run(backend: string): Promise<void> {
  if (running.has(backend)) return;
  running.add(backend);
  const table = $<HTMLTableElement>(`table-${backend}`);
  const body = table.tBodies[0]!;
  const summary = $(`summary-${backend}`);
  body.textContent = '';
  table.hidden = false;
  const count = { pass: 0, fail: 0, unsupported: 0, reference: 0 } as Record<string, number>;
  const show = (done: boolean) =>
    (summary.textContent = `${backend}: ${count.pass} pass, ${count.fail} fail, ${count.unsupported} unsupported${done ? '' : ' …'}`);
  document.body.dataset[backend] = 'running';
  show(false);
  try {
    const ops = params.get('ops')?.split(',').filter(Boolean);
    const r = await client.request<{ backend: string; description: string; rows: VerifyRow[] }>({ type: 'verify', backend, ops }, (m) => {
      if (m.type !== 'case') return;
      const row = m.row;
      count[row.status] = (count[row.status] ?? 0) + 1;
      const tr = body.insertRow();
      tr.dataset.status = row.status;
      tr.title = row.reason;
      for (const [text, cls] of [[row.op, ''], [row.name, ''], [row.status, row.status], [fmt(row.nmse), ''], [fmt(row.threshold), ''], [row.firstMismatch || (row.status === 'unsupported' ? row.reason : ''), '']]) {
        const td = tr.insertCell();
        td.textContent = text;
        if (cls) td.className = cls;
      }
      show(false);
    });
    show(true);
    $(`device-${backend}`).textContent = `${r.backend}: ${r.description}`;
    document.body.dataset[backend] = count.fail ? 'fail' : 'pass';
    document.body.dataset[`${backend}Backend`] = r.backend;
  } catch (e) {
    summary.textContent = `${backend}: ${(e as Error).message}`;
    document.body.dataset[backend] = 'unavailable';
  } finally {
    running.delete(backend);
  }
}

if (location.protocol !== 'file:') {
  $('run-webgpu').onclick = () => void run('webgpu');
  $('run-wasm').onclick = () => void run('wasm');
  void (async () => {
    for (const b of (params.get('run') ?? '').split(',').filter((x) => x === 'webgpu' || x === 'wasm')) await run(b);
  })();
}
