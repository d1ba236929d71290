// `--lavi key=value,key=value` on the command line (lavi cost, lavi bench): lavi_config fields changed on top of
// a preset or config.json, validated by parseConfig like a config file. Lists (viln_norms) join with '+':
//   --lavi every_k=2,viln_norms=input_layernorm,kv_dtype=bf16,shared_visual_kv=true

import { ValueError } from '../../core/errors.js';
import { parseConfig, type ModelConfig } from './config.js';

/** The config with `spec`'s lavi_config fields applied (throws ValueError naming the bad field). */
export function applyLaviOverrides(cfg: ModelConfig, spec: string, where = '--lavi'): ModelConfig {
  const lavi: Record<string, unknown> = { ...cfg.lavi_config };
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new ValueError(`${where}: expected key=value, got '${part}'`);
    const key = part.slice(0, eq), raw = part.slice(eq + 1);
    if (!(key in cfg.lavi_config)) throw new ValueError(`${where}: unknown lavi_config field '${key}' (fields: ${Object.keys(cfg.lavi_config).join(', ')})`);
    const cur = (cfg.lavi_config as unknown as Record<string, unknown>)[key];
    let v: unknown = raw;
    if (Array.isArray(cur)) v = raw === '' ? [] : raw.split('+');
    else if (typeof cur === 'boolean') {
      if (raw !== 'true' && raw !== 'false') throw new ValueError(`${where}: ${key} must be true or false, got '${raw}'`);
      v = raw === 'true';
    } else if (typeof cur === 'number') {
      v = Number(raw);
      if (raw === '' || !Number.isFinite(v as number)) throw new ValueError(`${where}: ${key} must be a number, got '${raw}'`);
    }
    lavi[key] = v;
  }
  return parseConfig({ ...cfg, lavi_config: lavi }, where);
}

/** A short description of the design choices that set LaVi's decode cost. */
export function describeLavi(cfg: ModelConfig): string {
  const l = cfg.lavi_config;
  return `r ${l.conditioner_width}, ${l.conditioner_heads} heads, norms ${l.viln_norms.map((n) => (n === 'input_layernorm' ? 'in' : 'post')).join('+')}` +
    `${l.modulate_final_norm ? '+final' : ''}, every_k ${l.every_k}, K/U ${l.kv_dtype}${l.shared_visual_kv ? ' shared' : ' per site'}` +
    `${l.conditioner_per_layer ? ', one conditioner per layer' : ''}${l.modulate !== 'both' ? `, modulate ${l.modulate}` : ''}`;
}
