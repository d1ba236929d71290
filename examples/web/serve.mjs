#!/usr/bin/env node
// Serves the web example on 127.0.0.1 (never on other interfaces) with the headers a page needs for WebAssembly
// threads — Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp make the page
// cross-origin isolated, which gives it SharedArrayBuffer — and with HTTP range requests, which the model loader
// uses to read the checkpoint tensor by tensor.
//
//   node examples/web/serve.mjs [--port 8080] [--no-isolation] [--mount /prefix/=DIR]... [--quiet]
//
//   /                 the ask page (examples/web/index.html)     /verify.html  "verify this device"
//   /dist/…           the bundles (node examples/web/build.mjs)  /models/…     models/weights/ (lavi-vqa)
//   /images/…         examples/images/                           /vqa/…        examples/vqa/
// --no-isolation leaves the COOP/COEP headers out (the page then runs wasm on one thread); --port 0 picks a free
// port. The first line printed is "serving http://127.0.0.1:PORT/".
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const port = Number(opt('--port', process.env.PORT ?? '8080'));
const isolation = !args.includes('--no-isolation');
const quiet = args.includes('--quiet');
const mounts = [
  ['/dist/', join(here, 'dist')],
  ['/models/', join(root, 'models', 'weights')],
  ['/images/', join(root, 'examples', 'images')],
  ['/vqa/', join(root, 'examples', 'vqa')],
];
args.forEach((a, i) => {
  if (a === '--mount') {
    const [prefix, dir] = args[i + 1].split('=');
    mounts.unshift([prefix.endsWith('/') ? prefix : prefix + '/', resolve(dir)]);
  }
});
const pages = { '/': 'index.html', '/index.html': 'index.html', '/verify.html': 'verify.html', '/style.css': 'style.css' };
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.png': 'image/png', '.jpg': 'image/jpeg', '.map': 'application/json', '.jsonl': 'application/x-ndjson' };

function fileFor(pathname) {
  if (pages[pathname]) return join(here, pages[pathname]);
  for (const [prefix, dir] of mounts) {
    if (!pathname.startsWith(prefix)) continue;
    const full = resolve(dir, '.' + pathname.slice(prefix.length - 1));
    return full === dir || full.startsWith(dir + sep) ? full : null;
  }
  return null;
}

const server = createServer((req, res) => {
  const headers = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };
  if (isolation) Object.assign(headers, { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin' });
  const fail = (code, text) => {
    res.writeHead(code, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(req.method === 'HEAD' ? undefined : text + '\n');
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'method not allowed');
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  } catch {
    return fail(400, 'bad request');
  }
  const file = fileFor(pathname);
  let st = null;
  try {
    st = file && statSync(file);
  } catch {}
  if (!st || !st.isFile()) return fail(404, `not found: ${pathname}`);
  Object.assign(headers, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Accept-Ranges': 'bytes' });
  const size = st.size;
  const range = req.headers.range;
  let start = 0, end = size - 1, status = 200;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range);
    if (!m || (m[1] === '' && m[2] === '')) return fail(416, 'bad range');
    if (m[1] === '') start = Math.max(0, size - Number(m[2]));
    else {
      start = Number(m[1]);
      end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    }
    if (start > end || start >= size) {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` });
      return res.end();
    }
    status = 206;
    headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
  }
  headers['Content-Length'] = String(end - start + 1);
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || size === 0) return res.end();
  createReadStream(file, { start, end }).pipe(res);
});
server.listen(port, '127.0.0.1', () => {
  const url = `http://127.0.0.1:${server.address().port}/`;
  console.log(`serving ${url}`);
  if (!quiet) console.log(`  ${url}  ask the bundled LaVi model\n  ${url}verify.html  verify this device's WebGPU and wasm against the CPU reference\n  cross-origin isolation (COOP/COEP): ${isolation ? 'on' : 'off (wasm runs on one thread)'}`);
});
