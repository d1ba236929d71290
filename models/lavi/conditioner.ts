// ViLN conditioners, attention variant (models/README.md, "ViLN conditioner"). One conditioner per modulated
// norm, or (lavi_config.conditioner_per_layer) one per modulated layer whose output holds the deltas of all the
// layer's modulated norms, computed at the first of them. Per image, each conditioner's keys K and values U are
// computed once from the projected visual tokens V (`prepare`) and kept in a VisualContext for the whole generation; per text token, the conditioner maps the
// token's normalised state x̂_t to deltas [Δγ_t, Δβ_t] by attending over (K, U).
//
// Cost sections (nested under the caller's 'llm'): 'viln-kv' for the per-image K/U projections, 'viln' for the
// per-token work (x̂, q projection, attention over the visual tokens, o_proj).

import { ShapeError, UnsupportedError, ValueError, fmtShape } from '../../core/errors.js';
import { costSection } from '../../core/cost.js';
import { keep, tidy } from '../../core/scope.js';
import type { Tensor } from '../../core/tensor.js';
import { attention, cast, layerNorm, linear, modulatedNorm, reshape, rmsNorm, sliceAxis, transpose } from '../../ops/index.js';
import type { ModelWeights } from '../loading/weights.js';
import { normSiteKey, type NormHook, type NormName } from '../qwen2/decoder.js';
import type { ModelConfig } from './config.js';
import type { ConditionerWeights, SharedKVWeights } from './weights.js';

/** A conditioner's per-image state: K and U as [1, N_v, h_c, r/h_c] (token-major), or [1, h_c, N_v, r/h_c]
 *  (head-major: each head's keys one contiguous run) on backends whose attention reads that natively
 *  (Backend.headMajorKV: wasm's decode kernel streams it about twice as fast from memory); stored in
 *  lavi_config.kv_dtype. With shared_visual_kv every site holds the same pair. */
export interface ConditionerKV {
  k: Tensor;
  u: Tensor;
  headMajor: boolean;
}

/** '3.input_layernorm', 'final.norm': the decoder's key of a norm site. */
export function siteKey(layer: number | 'final', norm: NormName): string {
  return normSiteKey(layer, norm);
}

export class Conditioner {
  private readonly r: number;
  private readonly heads: number;
  private readonly d: number;

  constructor(
    readonly cfg: ModelConfig,
    private readonly w: ModelWeights,
    /** This conditioner's tensors (lavi.conditioners.3.input_layernorm.*). */
    readonly table: ConditionerWeights,
  ) {
    this.r = cfg.lavi_config.conditioner_width;
    this.heads = cfg.lavi_config.conditioner_heads;
    this.d = cfg.text_config.hidden_size;
  }

  private get(spec: { name: string } | null): Tensor | null {
    return spec ? this.w.get(spec.name) : null;
  }

  /** The per-token tensors, looked up once (per token, building and hashing four names per norm showed up). */
  private perToken: { q: Tensor; qBias: Tensor | null; o: Tensor; oBias: Tensor } | null = null;

  private tokenWeights(): { q: Tensor; qBias: Tensor | null; o: Tensor; oBias: Tensor } {
    return (this.perToken ??= { q: this.get(this.table.q)!, qBias: this.get(this.table.qBias), o: this.get(this.table.o)!, oBias: this.get(this.table.oBias)! });
  }

  /** K, U from the projected visual tokens V [1, N_v, d] (this site's own k/v projections). */
  precompute(V: Tensor): ConditionerKV {
    const t = this.table;
    if (!t.k || !t.v) throw new ValueError(`conditioner ${t.q.name}: no k/v projections of its own (shared_visual_kv)`);
    return projectVisualKV(this.cfg, this.w, { lnV: t.lnV, lnVBias: t.lnVBias, k: t.k, kBias: t.kBias, v: t.v, vBias: t.vBias }, V);
  }

  /** o_proj's whole output [1, T, n·m·d] for tokens whose normalised states are x̂ [1, T, d]: [Δγ ; Δβ] ('both'),
   *  Δγ or Δβ, for each of the n sites this conditioner serves (table.sites), in that order. */
  output(xhat: Tensor, kv: ConditionerKV): Tensor {
    const T = xhat.shape[1]!;
    const dh = this.r / this.heads;
    const w = this.tokenWeights();
    const q = reshape(linear(xhat, w.q, w.qBias), [1, T, this.heads, dh]);
    const a = reshape(attentionOverKV(q, kv, 1 / Math.sqrt(dh)), [1, T, this.r]);
    return linear(a, w.o, w.oBias);
  }

  /** Deltas of site `part` (index into table.sites) from output(); null where the config does not modulate.
   *  `delta` is the site's block [1, T, m·d] (the whole output when the conditioner serves one site). */
  split(output: Tensor, part = 0): { dGamma: Tensor | null; dBeta: Tensor | null; delta: Tensor } {
    const d = this.d, modulate = this.cfg.lavi_config.modulate, m = modulate === 'both' ? 2 : 1;
    const delta = this.table.sites.length === 1 ? output : sliceAxis(output, 2, part * m * d, (part + 1) * m * d);
    switch (modulate) {
      case 'both':
        return { dGamma: sliceAxis(delta, 2, 0, d), dBeta: sliceAxis(delta, 2, d, 2 * d), delta };
      case 'scale':
        return { dGamma: delta, dBeta: null, delta };
      case 'shift':
        return { dGamma: null, dBeta: delta, delta };
    }
  }
}

/** K, U = (LN_v(V)) k_proj, v_proj as [1, N_v, h_c, r/h_c] (head-major [1, h_c, N_v, r/h_c] where the backend
 *  reads it natively), stored in kv_dtype. */
function projectVisualKV(cfg: ModelConfig, w: ModelWeights, t: SharedKVWeights, V: Tensor): ConditionerKV {
  const l = cfg.lavi_config;
  const get = (spec: { name: string } | null) => (spec ? w.get(spec.name) : null);
  return tidy(() => {
    const Nv = V.shape[1]!;
    const shape = [1, Nv, l.conditioner_heads, l.conditioner_width / l.conditioner_heads];
    const vn = t.lnV ? layerNorm(V, get(t.lnV)!, get(t.lnVBias)!, l.conditioner_ln_eps) : V;
    const headMajor = V.backend.headMajorKV === true;
    const layout = (x: Tensor) => (headMajor ? transpose(x, [0, 2, 1, 3]) : x);
    const store = (x: Tensor) => (l.kv_dtype === 'f32' ? x : cast(x, l.kv_dtype));
    const k = store(layout(reshape(linear(vn, get(t.k)!, get(t.kBias)), shape)));
    const u = store(layout(reshape(linear(vn, get(t.v)!, get(t.vBias)), shape)));
    return { k, u, headMajor };
  });
}

/** Backends that refused packed (f16/bf16) K/U in attention: their conditioners widen K/U per call. */
const widenOn = new WeakSet<object>();

/** Attention of q over a site's K/U. K/U stored f16/bf16 go to ops.attention as they are (wasm and the CPU read
 *  them packed); a backend that refuses them (supports() with a reason) gets them widened to f32 per call. */
function attentionOverKV(q: Tensor, kv: ConditionerKV, scale: number): Tensor {
  const opts = { causal: false, scale, kvHeadMajor: kv.headMajor };
  if (kv.k.dtype === 'f32') return attention(q, kv.k, kv.u, opts);
  if (!widenOn.has(q.backend)) {
    try {
      return attention(q, kv.k, kv.u, opts);
    } catch (e) {
      if (!(e instanceof UnsupportedError)) throw e;
      widenOn.add(q.backend);
    }
  }
  return tidy(() => attention(q, cast(kv.k, 'f32'), cast(kv.u, 'f32'), opts));
}

/** Per-image conditioner state for every modulated norm; owned by the model for one generation. */
export class VisualContext {
  constructor(
    private readonly states: Map<string, ConditionerKV>,
    /** N_v: visual tokens the conditioners attend over. */
    readonly numTokens: number,
  ) {
    for (const s of this.unique()) keep(s.k), keep(s.u);
  }

  /** The distinct K/U pairs (one for all sites with shared_visual_kv). */
  private unique(): ConditionerKV[] {
    return [...new Set(this.states.values())];
  }

  get(key: string): ConditionerKV | undefined {
    return this.states.get(key);
  }

  /** The cached K/U tensors (for accounting). */
  tensors(): Tensor[] {
    return this.unique().flatMap((s) => [s.k, s.u]);
  }

  /** Bytes held by the cached K/U. */
  bytes(): number {
    let n = 0;
    for (const s of this.unique()) n += (s.k.size + s.u.size) * (s.k.dtype === 'f32' ? 4 : 2);
    return n;
  }

  dispose(): void {
    for (const s of this.unique()) s.k.dispose(), s.u.dispose();
    this.states.clear();
  }
}

/** All conditioners of a config (none in concat mode). */
export class ConditionerSet {
  /** By conditioner key (weights.ts conditionerUnits). */
  private readonly byKey = new Map<string, Conditioner>();
  /** By site key: the conditioner and the site's index among those it serves. */
  private readonly bySiteKey = new Map<string, { cond: Conditioner; part: number }>();

  constructor(
    readonly cfg: ModelConfig,
    private readonly w: ModelWeights,
    tables: ReadonlyMap<string, ConditionerWeights>,
    /** lavi.shared_kv.* when shared_visual_kv. */
    private readonly shared: SharedKVWeights | null = null,
  ) {
    for (const [key, t] of tables) {
      const cond = new Conditioner(cfg, w, t);
      this.byKey.set(key, cond);
      t.sites.forEach((site, part) => this.bySiteKey.set(site, { cond, part }));
    }
    if (this.byKey.size && cfg.lavi_config.shared_visual_kv && !shared) throw new ValueError('conditioners: shared_visual_kv without lavi.shared_kv weights');
  }

  /** Number of conditioners (sites, or layers with conditioner_per_layer). */
  get size(): number {
    return this.byKey.size;
  }

  /** The conditioner of a site and the site's index among those it serves. */
  get(layer: number | 'final', norm: NormName): { cond: Conditioner; part: number } | undefined {
    return this.bySiteKey.get(siteKey(layer, norm));
  }

  /** get() by site key (siteKey(layer, norm)), for callers that keep the keys. */
  bySite(key: string): { cond: Conditioner; part: number } | undefined {
    return this.bySiteKey.get(key);
  }

  /** K/U of every conditioner from V [1, N_v, d]. Cost section 'llm/viln-kv'. */
  prepare(V: Tensor): VisualContext {
    const d = this.cfg.text_config.hidden_size;
    if (V.rank !== 3 || V.shape[0] !== 1 || V.shape[2] !== d) throw new ShapeError(`conditioners: visual tokens must be [1, N_v, ${d}], got ${fmtShape(V.shape)}`);
    if (V.shape[1] === 0) throw new ValueError('conditioners: an image with zero visual tokens');
    const states = new Map<string, ConditionerKV>();
    costSection('llm', () =>
      costSection('viln-kv', () => {
        const shared = this.shared ? projectVisualKV(this.cfg, this.w, this.shared, V) : null;
        for (const c of this.byKey.values()) {
          const kv = shared ?? c.precompute(V);
          for (const site of c.table.sites) states.set(site, kv);
        }
      }),
    );
    return new VisualContext(states, V.shape[1]!);
  }
}

/**
 * The decoder's norm hook for one image: ViLN at every site that has a conditioner, the plain RMSNorm elsewhere.
 * `sink` sees each site's deltas [1, T, m·d] by site key (for tests; it must copy what it keeps). A conditioner that
 * serves several sites of a layer (conditioner_per_layer) runs at the first of them, on that norm's input; the
 * later sites of the layer take their blocks of its output, kept until the last of them.
 */
export function visualNormHook(set: ConditionerSet, visual: VisualContext, sink?: (site: string, delta: Tensor) => void): NormHook {
  const pending = new Map<Conditioner, Tensor>();
  return (x, site, gamma, eps) => {
    const entry = set.bySite(site.key);
    const kv = visual.get(site.key);
    // No conditioner here, or no image: the plain RMSNorm (text-only input runs exactly the base LLM).
    if (!entry || !kv) return null;
    const { cond, part } = entry;
    const n = cond.table.sites.length;
    return tidy(() => {
      const out = part === 0 ? costSection('viln', () => cond.output(rmsNorm(x, null, eps), kv)) : pending.get(cond);
      if (!out) throw new ValueError(`conditioner ${site.key}: the layer's first modulated norm did not run before it`);
      if (part === 0 && n > 1) {
        pending.get(cond)?.dispose();
        pending.set(cond, keep(out));
      }
      const { dGamma, dBeta, delta } = costSection('viln', () => cond.split(out, part));
      sink?.(site.key, delta);
      const y = modulatedNorm(x, gamma, { kind: 'rms', eps, dGamma, dBeta });
      if (n > 1 && part === n - 1) pending.delete(cond), out.dispose();
      return y;
    });
  };
}
