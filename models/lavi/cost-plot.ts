// `lavi cost --plot FILE.svg`: prefill FLOPs, peak memory and decode bytes per token (decode is bound by memory
// bandwidth, so these bytes are what sets its time) against the number of visual tokens, LaVi vs concat, counted
// on the meta backend by costReport at 1, 2, 4, 8 and 10 crops (as far as max_position_embeddings allows).

import { visualTokensPerImage, type ModelConfig } from './config.js';
import { costReport, fmtBytes, fmtFlops } from './cost-report.js';
import { describeLavi } from './overrides.js';
import { plotSvg, type Panel } from './plot.js';

export function costPlot(cfg: ModelConfig, name: string, o: { textTokens: number; weightDType: 'f32' | 'f16' | 'bf16' }): string {
  const per = visualTokensPerImage(cfg.vision_config);
  const Ns = [1, 2, 4, 8, 10].map((c) => c * per).filter((n) => n + o.textTokens + 1 <= cfg.text_config.max_position_embeddings);
  const reports = Ns.map((N) => costReport(cfg, { imageTokens: N, textTokens: o.textTokens, weightDType: o.weightDType }));
  const panel = (title: string, fmt: (y: number) => string, get: (r: (typeof reports)[number], m: 'lavi' | 'concat') => number): Panel => ({
    title,
    fmt,
    lavi: { label: 'LaVi', points: reports.map((r) => [r.imageTokens, get(r, 'lavi')]) },
    concat: { label: 'concat', points: reports.map((r) => [r.imageTokens, get(r, 'concat')]) },
  });
  return plotSvg(
    `lavi cost: ${name}, ${o.textTokens} text tokens, ${o.weightDType} weights (LaVi: ${describeLavi(cfg)})`,
    'counted by the ops on the meta backend (lavi cost); ×: LaVi/concat; decode time on CPUs follows the bytes read per token',
    [
      panel('prefill FLOPs (image + prompt)', fmtFlops, (r, m) => r[m].prefill.total),
      panel('LLM prefill FLOPs', fmtFlops, (r, m) => r[m].prefill.llm),
      panel('peak memory', fmtBytes, (r, m) => r[m].memory.peakTotal),
      panel('decode: bytes read per token', fmtBytes, (r, m) => r[m].decodePerToken.bytes.total),
    ],
  );
}
