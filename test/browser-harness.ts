// Drives the web example (examples/web) in Debian's Chromium with playwright-core (no browser download): builds
// the minified bundles, serves them (examples/web/serve.mjs), launches Chromium headless with WebGPU on
// SwiftShader. Used by test/browser.test.ts and test/bench/web-bench.ts.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CHROMIUM = process.env.LAVI_CHROMIUM ?? '/usr/bin/chromium';

/** Chromium's flags: headless, no sandbox (root in CI), no GPU process, WebGPU on SwiftShader, nothing online. */
export function chromiumArgs(webgpu = true): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage', // containers often have a tiny /dev/shm
    ...(webgpu ? ['--enable-unsafe-webgpu'] : []),
  ];
}

/** Builds examples/web/dist (minified); returns the build report. */
export function buildWeb(): { minified: boolean; sizes: Record<string, number> } {
  const r = spawnSync(process.execPath, [join(ROOT, 'examples/web/build.mjs'), '--quiet'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`examples/web/build.mjs failed (exit ${r.status}): ${r.stderr}${r.stdout}`);
  return JSON.parse(readFileSync(join(ROOT, 'examples/web/dist/build.json'), 'utf8'));
}

export interface Server {
  url: string;
  close(): void;
}

/** Starts examples/web/serve.mjs on a free port. */
export async function serve(extra: string[] = []): Promise<Server> {
  const p: ChildProcess = spawn(process.execPath, [join(ROOT, 'examples/web/serve.mjs'), '--port', '0', '--quiet', ...extra], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('serve.mjs did not start in 20 s')), 20_000);
    let buf = '';
    p.stdout!.on('data', (d) => {
      buf += String(d);
      const m = /serving (\S+)/.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    p.once('exit', (code) => reject(new Error(`serve.mjs exited (${code})`)));
  });
  return { url, close: () => p.kill() };
}

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Launches Chromium with a fresh user-data-dir. */
export async function launch(webgpu = true): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  const dir = mkdtempSync(join(tmpdir(), 'lavi-chromium-'));
  const context = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true, args: chromiumArgs(webgpu), timeout: 60_000 });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const hasChromium = (): boolean => existsSync(CHROMIUM);

/** The value of a data-* attribute of <body> (the pages publish their state there). */
export function state(page: Page, key: string): Promise<string | null> {
  return page.getAttribute('body', `data-${key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`);
}

/** Waits until body[data-key] is one of `values`; returns it. */
export async function waitState(page: Page, key: string, values: string[], timeoutMs = 60_000): Promise<string> {
  const attr = `data-${key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`;
  const sel = values.map((v) => `body[${attr}="${v}"]`).join(', ');
  await page.waitForSelector(sel, { state: 'attached', timeout: timeoutMs });
  return (await page.getAttribute('body', attr))!;
}

export interface PageAsk {
  answer: string;
  ttftMs: number;
  tokensPerSecond: number;
}

/** Loads the ask page on `backend` and waits for the model (or the failure). */
export async function openAsk(page: Page, base: string, backend: string, model?: string, extra = ''): Promise<{ state: string; loadMs: number }> {
  await page.goto(`${base}?backend=${backend}${model ? `&model=${encodeURIComponent(model)}` : ''}${extra}`);
  const s = await waitState(page, 'load', ['loaded', 'failed']);
  return { state: s, loadMs: Number(await state(page, 'loadMs')) };
}

/** Asks through the page's own controls: file picker, question box, Ask; waits for the streamed answer. */
export async function askInPage(page: Page, imagePath: string, question: string): Promise<PageAsk> {
  await page.evaluate('document.body.removeAttribute("data-image")'); // so that the wait below sees this file's result
  await page.setInputFiles('#file', imagePath);
  const img = await waitState(page, 'image', ['ok', 'bad']);
  if (img !== 'ok') throw new Error(`image refused: ${await page.textContent('#error')}`);
  await page.fill('#question', question);
  await page.evaluate('document.body.removeAttribute("data-ask")');
  await page.click('#ask-btn');
  const s = await waitState(page, 'ask', ['done', 'failed']);
  if (s !== 'done') throw new Error(`ask failed: ${await page.textContent('#error')}`);
  return {
    answer: ((await page.textContent('#answer')) ?? '').trim(),
    ttftMs: Number(await state(page, 'ttftMs')),
    tokensPerSecond: Number(await state(page, 'tokensPerSecond')),
  };
}

/** The README's three examples (questions from examples/images/questions.json) with the answers the README gives
 *  for the bundled model: all three right since issue 18's retraining (modelSays lists any it gets wrong). */
export function readmeExamples(): { image: string; question: string; answer: string }[] {
  const q = JSON.parse(readFileSync(join(ROOT, 'examples/images/questions.json'), 'utf8')) as Record<string, { question: string; answer: string }>;
  const modelSays: Record<string, string> = {};
  return ['shapes1.png', 'shapes2.png', 'shapes3.png'].map((f) => ({ image: join(ROOT, 'examples/images', f), question: q[f]!.question, answer: modelSays[f] ?? q[f]!.answer }));
}
