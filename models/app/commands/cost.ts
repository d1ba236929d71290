// `lavi cost --config <preset|config.json> [--image-tokens N] [--text-tokens T] [--weight-dtype bf16|f16|f32] [--json]`
// FLOPs and memory of LaVi vs the LLaVA-style concat baseline, counted on the meta backend (see cost_report.ts).

import { resolveConfig } from '../../lavi/config.js';
import { costReport, formatCostReport } from '../../lavi/cost-report.js';
import { applyLaviOverrides } from '../../lavi/overrides.js';
import { costPlot } from '../../lavi/cost-plot.js';
import { intFlag, parseArgs, UsageError } from './args.js';

const HELP = `usage: lavi cost --config <preset|path/to/config.json> [options]

FLOPs and memory of LaVi vs the concat baseline (same tower, projector and LLM; visual tokens in the context),
counted by the engine's ops on the shape-only meta backend: no weights are needed.

options:
  --config X          a preset (lavi-7b, lavi-0.5b) or a config.json (or a directory holding one)
  --image-tokens N    visual tokens (default: one crop, e.g. 729); the tower runs on ceil(N / per-crop) crops
                      and the projected tokens are cut to N (7290 = 10 crops); 0 = text only
  --text-tokens T     prompt tokens (default 100)
  --weight-dtype D    storage of Linear weights and embeddings: bf16 (default), f16 or f32
  --json              print the report as JSON
  --lavi k=v,k=v      lavi_config fields on top of the config (lists join with '+'), e.g.
                      --lavi every_k=2,viln_norms=input_layernorm,kv_dtype=bf16,shared_visual_kv=true
  --plot FILE.svg     also plot prefill FLOPs, peak memory and decode bytes per token (what bounds decode time)
                      against visual tokens (1, 2, 4, 8, 10 crops), LaVi vs concat`;

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, { boolean: ['json', 'help'], string: ['config', 'image-tokens', 'text-tokens', 'weight-dtype', 'lavi', 'plot'] }, 'lavi cost');
  if (p.flags.has('help')) {
    console.log(HELP);
    return 0;
  }
  if (p.positional.length) throw new UsageError(`unexpected argument '${p.positional[0]}'`);
  const configArg = p.flags.get('config');
  if (typeof configArg !== 'string') throw new UsageError('--config is required (a preset: lavi-7b, lavi-0.5b; or a config.json)');
  let cfg = await resolveConfig(configArg);
  const lv = p.flags.get('lavi');
  if (typeof lv === 'string') cfg = applyLaviOverrides(cfg, lv);
  const dt = p.flags.get('weight-dtype') ?? 'bf16';
  if (dt !== 'bf16' && dt !== 'f16' && dt !== 'f32') throw new UsageError(`--weight-dtype must be bf16, f16 or f32, got ${String(dt)}`);
  const report = costReport(cfg, {
    name: configArg,
    imageTokens: p.flags.has('image-tokens') ? intFlag(p, 'image-tokens', 0, 'lavi cost') : undefined,
    textTokens: intFlag(p, 'text-tokens', 100, 'lavi cost'),
    weightDType: dt,
  });
  console.log(p.flags.has('json') ? JSON.stringify(report, null, 2) : formatCostReport(report));
  const plot = p.flags.get('plot');
  if (typeof plot === 'string') {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(plot, costPlot(cfg, configArg, { textTokens: report.textTokens, weightDType: dt }));
    if (!p.flags.has('json')) console.log(`plot written to ${plot}`);
  }
  return 0;
}
