// The ask page: loads the model in the engine worker (progress bar), takes an image (file picker, drag and drop,
// or an example) and a question, streams the answer, and shows time to first token and tokens/s.
// URL parameters: ?backend=wasm|webgpu|cpu&model=URL (the tests use them).

import { EngineClient } from './client.js';
import type { AskDone, LoadedInfo } from './protocol.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const backendSel = $<HTMLSelectElement>('backend');
const modelUrl = $<HTMLInputElement>('model-url');
const loadBtn = $<HTMLButtonElement>('load');
const progress = $<HTMLProgressElement>('progress');
const loadStatus = $('load-status');
const backendInfo = $('backend-info');
const drop = $('drop');
const fileInput = $<HTMLInputElement>('file');
const preview = $<HTMLImageElement>('preview');
const imageStatus = $('image-status');
const question = $<HTMLInputElement>('question');
const askBtn = $<HTMLButtonElement>('ask-btn');
const answer = $('answer');
const stats = $('stats');
const errorBox = $('error');

let image: { bytes: Uint8Array; name: string } | null = null;
let loaded: LoadedInfo | null = null;
let busy = false;

function showError(msg: string | null): void {
  errorBox.hidden = msg === null;
  errorBox.textContent = msg ?? '';
}
function setState(k: string, v: string): void {
  document.body.dataset[k] = v;
}
function refresh(): void {
  askBtn.disabled = busy || !loaded || !image;
  loadBtn.disabled = busy;
}

const fatal = (why: string) => {
  const f = $('fatal');
  f.hidden = false;
  f.textContent = why;
  setState('load', 'failed');
};
const client = new EngineClient(fatal);
if (typeof Worker === 'undefined') fatal('this browser has no Web Workers; the engine cannot run');

async function load(): Promise<void> {
  busy = true;
  loaded = null;
  refresh();
  showError(null);
  progress.value = 0;
  progress.removeAttribute('max');
  loadStatus.textContent = 'loading…';
  backendInfo.textContent = '';
  setState('load', 'loading');
  const t0 = performance.now();
  try {
    // ?ranges=1: read the checkpoint tensor by tensor with range requests, as a large one always is.
    const wholeFileBytes = params.get('ranges') === '1' ? 0 : undefined;
    loaded = await client.request<LoadedInfo>({ type: 'load', modelUrl: new URL(modelUrl.value, location.href).href, backend: backendSel.value, wholeFileBytes }, (r) => {
      if (r.type === 'progress' && r.total > 0) {
        progress.max = r.total;
        progress.value = r.loaded;
        loadStatus.textContent = `${(r.loaded / 1048576).toFixed(1)} / ${(r.total / 1048576).toFixed(1)} MB`;
      }
    });
    progress.max = 1;
    progress.value = 1;
    const ms = performance.now() - t0;
    loadStatus.textContent = `loaded in ${ms.toFixed(0)} ms (${(loaded.bytesRead / 1048576).toFixed(1)} MB read${wholeFileBytes === 0 ? ' by range requests' : ''})`;
    backendInfo.textContent = `${loaded.backend}: ${loaded.description} · cross-origin isolated: ${loaded.crossOriginIsolated ? 'yes' : 'no'}`;
    setState('load', 'loaded');
    setState('backend', loaded.backend);
    setState('loadMs', ms.toFixed(0));
  } catch (e) {
    progress.max = 1;
    progress.value = 0;
    loadStatus.textContent = 'not loaded';
    showError(`Could not load the model: ${(e as Error).message}`);
    setState('load', 'failed');
  } finally {
    busy = false;
    refresh();
  }
}

async function setImage(bytes: Uint8Array, name: string, type: string): Promise<void> {
  showError(null);
  image = null;
  preview.hidden = true;
  setState('image', 'checking');
  try {
    const d = await client.request<{ width: number; height: number }>({ type: 'decode', bytes: bytes.slice(), name });
    image = { bytes, name };
    preview.src = URL.createObjectURL(new Blob([bytes as BlobPart], { type: type || 'image/png' }));
    preview.hidden = false;
    imageStatus.textContent = `${name}: ${d.width}×${d.height}`;
    setState('image', 'ok');
  } catch (e) {
    imageStatus.textContent = '';
    showError(`That file cannot be used: ${(e as Error).message}`);
    setState('image', 'bad');
  }
  refresh();
}

async function fromFile(f: File): Promise<void> {
  await setImage(new Uint8Array(await f.arrayBuffer()), f.name, f.type);
}

async function ask(): Promise<void> {
  if (!image || !loaded || busy) return;
  busy = true;
  refresh();
  showError(null);
  answer.textContent = '';
  stats.textContent = '';
  setState('ask', 'running');
  try {
    const r = await client.request<AskDone>({ type: 'ask', bytes: image.bytes.slice(), name: image.name, question: question.value }, (m) => {
      if (m.type === 'token') answer.textContent += m.text;
    });
    answer.textContent = r.answer;
    stats.textContent = `time to first token ${r.ttftMs.toFixed(1)} ms · ${r.tokensPerSecond.toFixed(0)} tokens/s · ${r.tokens} tokens in ${r.totalMs.toFixed(0)} ms · ${loaded.backend}`;
    setState('ttftMs', r.ttftMs.toFixed(2));
    setState('tokensPerSecond', r.tokensPerSecond.toFixed(1));
    setState('ask', 'done');
  } catch (e) {
    showError((e as Error).message);
    setState('ask', 'failed');
  } finally {
    busy = false;
    refresh();
  }
}

if (location.protocol !== 'file:') {
  const b = params.get('backend');
  if (b) backendSel.value = b;
  const m = params.get('model');
  if (m) modelUrl.value = m;
  loadBtn.onclick = () => void load();
  backendSel.onchange = () => void load();
  fileInput.onchange = () => {
    const f = fileInput.files?.[0];
    fileInput.value = ''; // choosing the same file again fires change again
    if (f) void fromFile(f);
  };
  drop.ondragover = (e) => {
    e.preventDefault();
    drop.classList.add('over');
  };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer?.files?.[0];
    if (f) void fromFile(f);
    else showError('Nothing usable was dropped: drop a PNG or JPEG file');
  };
  $<HTMLFormElement>('ask-form').onsubmit = (e) => {
    e.preventDefault();
    void ask();
  };
  for (const a of document.querySelectorAll<HTMLAnchorElement>('a.example')) {
    a.onclick = async (e) => {
      e.preventDefault();
      const res = await fetch(`images/${a.dataset.image}`);
      question.value = a.dataset.q ?? '';
      await setImage(new Uint8Array(await res.arrayBuffer()), a.dataset.image!, 'image/png');
    };
  }
  // For tests and scripts: a batch of questions in one worker round trip.
  (window as unknown as { laviPage: unknown }).laviPage = {
    askMany: (items: { bytes: Uint8Array; question: string }[]) => client.request<string[]>({ type: 'askMany', items }),
  };
  void load();
}
