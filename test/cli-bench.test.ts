// `lavi bench` (a tiny random config end to end, one process per run; bad input → exit 2) and `lavi cost --plot`.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyConfig } from '../models/lavi/config.js';

const CLI = fileURLToPath(new URL('../models/app/cli.js', import.meta.url));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('lavi bench: a tiny config, LaVi (shared bf16 K/U) and concat at two token counts, JSON and plot', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lavi-bench-'));
  try {
    const cfgPath = join(dir, 'config.json');
    await writeFile(cfgPath, JSON.stringify(tinyConfig({ lavi_config: { kv_dtype: 'bf16', shared_visual_kv: true } })));
    const plot = join(dir, 'bench.svg');
    const r = cli('bench', '--config', cfgPath, '--image-tokens', '16,32', '--text-tokens', '4', '--new-tokens', '3', '--repeats', '1', '--threads', '1', '--json', '--plot', plot);
    assert.is(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.is(j.runs.length, 4);
    assert.equal(j.summary.map((s: { imageTokens: number }) => s.imageTokens), [16, 32]);
    for (const s of j.summary) {
      for (const m of ['visionS', 'prefillS', 'ttftS', 'decodeTokS', 'heapPeak', 'rssPeak']) {
        assert.ok(s.lavi[m] > 0 && s.concat[m] > 0, m);
        assert.ok(s.ratio[m].median > 0, m);
      }
      assert.ok(s.lavi.kuS > 0);
    }
    // decode interleaved in one process, per token count: 8 block pairs (2 × 3 tokens → at least 8 blocks)
    assert.equal(j.paired.map((x: { imageTokens: number }) => x.imageTokens), [16, 32]);
    for (const x of j.paired) {
      assert.is(x.blocks, 8);
      assert.ok(x.laviTokS > 0 && x.concatTokS > 0 && x.ratio.min > 0 && x.ratio.min <= x.ratio.median && x.ratio.median <= x.ratio.max, JSON.stringify(x));
      // LaVi/concat: the ratio of the medians lies within the per-block ratios' range (a reversed ratio would not)
      const r = x.laviTokS / x.concatTokS;
      assert.ok(x.ratio.min <= r * (1 + 1e-9) && r <= x.ratio.max * (1 + 1e-9), `${r} outside [${x.ratio.min}, ${x.ratio.max}]`);
    }
    const svg = await readFile(plot, 'utf8');
    assert.match(svg, /^<svg/);
    assert.match(svg, />LaVi</);
    assert.match(svg, />concat</);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('lavi bench: the interleaved decode fits its blocks to max_position_embeddings, or is skipped when none fit', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lavi-bench-'));
  try {
    const cfgPath = join(dir, 'config.json');
    const cfg = tinyConfig({ lavi_config: { kv_dtype: 'bf16', shared_visual_kv: true } });
    assert.is(cfg.text_config.max_position_embeddings, 256);
    await writeFile(cfgPath, JSON.stringify(cfg));
    // 224 + 16 prompt positions leave room for 3 blocks of 4; 236 + 16 for none (the separate runs still fit: + 1 + 2)
    const r = cli('bench', '--config', cfgPath, '--image-tokens', '224,236', '--text-tokens', '16', '--new-tokens', '1', '--repeats', '1', '--threads', '1', '--json');
    assert.is(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.is(j.runs.length, 4);
    assert.equal(j.paired.map((x: { imageTokens: number; blocks: number }) => [x.imageTokens, x.blocks]), [[224, 3]]);
    assert.equal(j.pairedNotRun, ['decode interleaved at 236 visual tokens: not run (max_position_embeddings 256 leaves no room for 2 blocks of 4)']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('lavi bench: bad input is a usage error (exit 2) with a clear message', () => {
  const cases: [string[], RegExp][] = [
    [['--config', 'lavi-0.5b', '--image-tokens', '32700'], /32700 visual \+ 64 text \+ 16 new tokens \(\+ 2\) exceed max_position_embeddings 32768/],
    [['--config', 'no-such-preset'], /neither a preset/],
    [['--config', 'lavi-0.5b', '--image-tokens', '0'], /positive integer, got '0'/],
    [['--config', 'lavi-0.5b', '--image-tokens', '-729'], /positive integer, got '-729'/],
    [['--config', 'lavi-0.5b', '--image-tokens', '729,x'], /positive integer, got 'x'/],
    [['--config', 'lavi-0.5b', '--new-tokens', '0'], /--new-tokens must be an integer ≥ 1/],
    [['--config', 'lavi-0.5b', '--dtype', 'f8'], /--dtype must be bf16, f16 or f32/],
    [['--config', 'lavi-0.5b', '--lavi', 'nope=1'], /unknown lavi_config field 'nope'/],
    [['--config', 'lavi-7b'], /does not fit: it needs about 1\d\.\d\d GiB of wasm32's 4 GiB heap/],
    [[], /--config is required/],
  ];
  for (const [args, re] of cases) {
    const r = cli('bench', ...args);
    assert.is(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re, args.join(' '));
  }
});

test('lavi cost --plot writes an SVG of FLOPs, memory and decode bytes vs visual tokens; --lavi changes the design', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lavi-costplot-'));
  try {
    const plot = join(dir, 'cost.svg');
    const r = cli('cost', '--config', 'lavi-0.5b', '--lavi', 'kv_dtype=bf16,shared_visual_kv=true,every_k=2,viln_norms=input_layernorm', '--plot', plot, '--json');
    assert.is(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.is(j.kvDType, 'bf16');
    assert.ok(j.lavi.decodePerToken.bytes.visualState > 0);
    const svg = await readFile(plot, 'utf8');
    for (const t of ['prefill FLOPs', 'peak memory', 'bytes read per token', '>LaVi<', '>concat<', '×']) assert.ok(svg.includes(t), t);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
