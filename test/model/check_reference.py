"""Self-consistency checks of models/reference/lavi_torch.py.

The naive_* functions below recompute the graph from the contract (models/README.md) one token, one head and
one visual token at a time, with explicit formulas (LayerNorm, GELU, RoPE as pair rotations, softmax, bilinear
resize), sharing nothing with the vectorised modules except the weight tensors. run_checks() compares them with
the model, and checks the structural properties of the spec (zeroed o_proj == base LLM, text-only == base LLM,
padding invariance, causality, greedy = teacher-forced argmax, safetensors round trip, training smoke test).

Usage:  /usr/bin/python3 test/model/check_reference.py            (checks + every fixture re-verified)
"""

from __future__ import annotations

import copy
import math
import os
import sys
import tempfile

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'models', 'reference'))

from lavi_torch import (  # noqa: E402
    LaviForConditionalGeneration, ModelConfig, load_safetensors, safetensors_metadata, save_safetensors,
)

# ------------------------------------------------------------------------------------------------ naive graph


def _ln(x, w, b, eps):
    mu = sum(float(v) for v in x) / len(x)
    var = sum((float(v) - mu) ** 2 for v in x) / len(x)
    return (x - mu) / math.sqrt(var + eps) * w + b


def _gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _softmax(scores):
    m = max(scores)
    e = [math.exp(s - m) for s in scores]
    z = sum(e)
    return [v / z for v in e]


def _lin(sd, name, x, bias=True):
    y = sd[name + '.weight'] @ x
    if bias and (name + '.bias') in sd:
        y = y + sd[name + '.bias']
    return y


def naive_vision(sd, cfg: ModelConfig, px):
    """px [3, S, S] -> features [N, Dv]."""
    vc = cfg.vision_config
    P, g, D, H = vc.patch_size, vc.grid, vc.hidden_size, vc.num_attention_heads
    dh = D // H
    act = _gelu_tanh if vc.hidden_act == 'gelu_pytorch_tanh' else _gelu_erf
    # the convolutional stem (ours): each layer a 2x2 stride-2 convolution, position by position, then the activation
    for i in range(len(vc.stem_channels)):
        Ws, bs = sd[f'vision_model.embeddings.stem.{i}.weight'], sd[f'vision_model.embeddings.stem.{i}.bias']
        side = px.shape[1] // 2
        y = torch.zeros(Ws.shape[0], side, side, dtype=px.dtype)
        for r in range(side):
            for c in range(side):
                win = px[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2]
                for o in range(Ws.shape[0]):
                    y[o, r, c] = act((Ws[o] * win).sum() + bs[o])
        px = y
    P = P >> len(vc.stem_channels)
    W = sd['vision_model.embeddings.patch_embedding.weight']
    bW = sd['vision_model.embeddings.patch_embedding.bias']
    pos = sd['vision_model.embeddings.position_embedding.weight']
    h = []
    for r in range(g):
        for c in range(g):
            patch = px[:, r * P:(r + 1) * P, c * P:(c + 1) * P]
            h.append(torch.stack([(W[o] * patch).sum() for o in range(D)]) + bW + pos[r * g + c])
    act = _gelu_tanh if vc.hidden_act == 'gelu_pytorch_tanh' else _gelu_erf
    for i in range(vc.num_hidden_layers):
        p = f'vision_model.encoder.layers.{i}.'
        n = [_ln(x, sd[p + 'layer_norm1.weight'], sd[p + 'layer_norm1.bias'], vc.layer_norm_eps) for x in h]
        q = [_lin(sd, p + 'self_attn.q_proj', x) for x in n]
        k = [_lin(sd, p + 'self_attn.k_proj', x) for x in n]
        v = [_lin(sd, p + 'self_attn.v_proj', x) for x in n]
        out = []
        for t in range(len(h)):
            heads = []
            for hh in range(H):
                sl = slice(hh * dh, (hh + 1) * dh)
                w = _softmax([float(q[t][sl] @ k[j][sl]) / math.sqrt(dh) for j in range(len(h))])
                heads.append(sum(w[j] * v[j][sl] for j in range(len(h))))
            out.append(_lin(sd, p + 'self_attn.out_proj', torch.cat(heads)))
        h = [h[t] + out[t] for t in range(len(h))]
        n = [_ln(x, sd[p + 'layer_norm2.weight'], sd[p + 'layer_norm2.bias'], vc.layer_norm_eps) for x in h]
        h = [h[t] + _lin(sd, p + 'mlp.fc2', act(_lin(sd, p + 'mlp.fc1', n[t]))) for t in range(len(h))]
    if vc.use_post_layernorm:
        h = [_ln(x, sd['vision_model.post_layernorm.weight'], sd['vision_model.post_layernorm.bias'], vc.layer_norm_eps)
             for x in h]
    return torch.stack(h)


def naive_projector(sd, feats):
    return torch.stack([_lin(sd, 'lavi.projector.linear_2', _gelu_erf(_lin(sd, 'lavi.projector.linear_1', f)))
                        for f in feats])


def naive_bilinear(grid, out_size):
    """grid [g, g, d] -> [o, o, d]; align_corners=False: src = (dst + 0.5) * g/o - 0.5, clamped below at 0."""
    g = grid.shape[0]
    scale = g / out_size

    def taps(dst):
        src = max((dst + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), g - 1)
        i1 = min(i0 + 1, g - 1)
        lam = src - i0
        return i0, i1, lam

    out = torch.zeros(out_size, out_size, grid.shape[2], dtype=grid.dtype)
    for y in range(out_size):
        y0, y1, ly = taps(y)
        for x in range(out_size):
            x0, x1, lx = taps(x)
            out[y, x] = ((1 - ly) * ((1 - lx) * grid[y0, x0] + lx * grid[y0, x1])
                         + ly * ((1 - lx) * grid[y1, x0] + lx * grid[y1, x1]))
    return out


def naive_video_tokens(sd, cfg: ModelConfig, frames_V):
    """frames_V [F, N, d] (projector output per frame) -> [F * n', d]."""
    g = cfg.vision_config.grid
    o = -(-g // cfg.video_config.pool)
    rows = []
    for f in range(frames_V.shape[0]):
        grid = frames_V[f].reshape(g, g, -1)
        pooled = grid if o == g else naive_bilinear(grid, o)
        pooled = pooled.reshape(o * o, -1)
        if cfg.video_config.frame_embedding:
            pooled = pooled + sd['lavi.frame_embedding.weight'][f]
        rows.append(pooled)
    return torch.cat(rows)


def _rope(x, pos, theta):
    """Rotate pairs (i, i + Dh/2) by pos * theta^(-2i/Dh) (what HF rotate_half does)."""
    dh = x.shape[0]
    half = dh // 2
    y = x.clone()
    for i in range(half):
        a = pos * theta ** (-2.0 * i / dh)
        c, s = math.cos(a), math.sin(a)
        y[i] = x[i] * c - x[i + half] * s
        y[i + half] = x[i + half] * c + x[i] * s
    return y


def _round_kv(x, kv_dtype):
    """K/U storage: f32 as is; bf16/f16 via float32, rounded to nearest even."""
    dt = {'f32': None, 'bf16': torch.bfloat16, 'f16': torch.float16}[kv_dtype]
    return x if dt is None else x.to(torch.float32).to(dt).to(x.dtype)


def _viln(sd, cfg: ModelConfig, gamma, site, x, V, layer_input=None):
    """layer_input: with conditioner_per_layer, the decoder layer's input (what the layer's first modulated norm
    normalises): the layer's one conditioner reads it and its o_proj holds each modulated norm's block in turn."""
    eps = cfg.text_config.rms_norm_eps
    xhat = x / math.sqrt(float((x * x).mean()) + eps)
    lc = cfg.lavi_config
    layer, norm = site.split('.')
    block, qx = 0, xhat
    if lc.conditioner_per_layer and layer != 'final':
        p = f'lavi.conditioners.{layer}.'
        mods = [n for n in ('input_layernorm', 'post_attention_layernorm') if n in lc.viln_norms]
        if norm not in mods:
            return gamma * xhat
        block = mods.index(norm)
        first = x if block == 0 else layer_input  # block 1 exists only with both norms: the first is the input norm
        qx = first / math.sqrt(float((first * first).mean()) + eps)
    else:
        p = f'lavi.conditioners.{site}.'
    if V is None or (p + 'q_proj.weight') not in sd:
        return gamma * xhat
    lc = cfg.lavi_config
    r, hc = lc.conditioner_width, lc.conditioner_heads
    dc = r // hc
    pk = 'lavi.shared_kv.' if lc.shared_visual_kv else p
    Vn = [(_ln(v, sd[pk + 'ln_v.weight'], sd[pk + 'ln_v.bias'], lc.conditioner_ln_eps) if lc.conditioner_ln_v else v)
          for v in V]
    K = [_round_kv(_lin(sd, pk + 'k_proj', v), lc.kv_dtype) for v in Vn]
    U = [_round_kv(_lin(sd, pk + 'v_proj', v), lc.kv_dtype) for v in Vn]
    q = _lin(sd, p + 'q_proj', qx)
    heads = []
    for h in range(hc):
        sl = slice(h * dc, (h + 1) * dc)
        w = _softmax([float(q[sl] @ k[sl]) / math.sqrt(dc) for k in K])
        heads.append(sum(w[j] * U[j][sl] for j in range(len(U))))
    d = x.shape[0]
    m = 2 if lc.modulate == 'both' else 1
    delta = _lin(sd, p + 'o_proj', torch.cat(heads))[block * m * d:(block + 1) * m * d]
    if lc.modulate == 'both':
        return (gamma + delta[:d]) * xhat + delta[d:]
    if lc.modulate == 'scale':
        return (gamma + delta) * xhat
    return gamma * xhat + delta


def naive_decoder(sd, cfg: ModelConfig, ids, V=None):
    """ids: list of ints; V [N_v, d] or None -> logits [L, vocab] over the whole sequence."""
    tc = cfg.text_config
    H, Hkv, dh = tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim
    emb = sd['model.embed_tokens.weight']
    h = [emb[i].clone() for i in ids]
    concat = cfg.lavi_config.mode == 'concat'
    if concat and V is not None:
        h = [v.clone() for v in V] + h
    Vc = None if concat else V
    for i in range(tc.num_hidden_layers):
        p = f'model.layers.{i}.'
        h_in = h
        n = [_viln(sd, cfg, sd[p + 'input_layernorm.weight'], f'{i}.input_layernorm', x, Vc) for x in h]
        q = [_lin(sd, p + 'self_attn.q_proj', x) for x in n]
        k = [_lin(sd, p + 'self_attn.k_proj', x) for x in n]
        v = [_lin(sd, p + 'self_attn.v_proj', x) for x in n]
        out = []
        for t in range(len(h)):
            heads = []
            for hh in range(H):
                kv = hh // (H // Hkv)
                qs = _rope(q[t][hh * dh:(hh + 1) * dh], t, tc.rope_theta)
                ks = [_rope(k[j][kv * dh:(kv + 1) * dh], j, tc.rope_theta) for j in range(t + 1)]
                w = _softmax([float(qs @ kk) / math.sqrt(dh) for kk in ks])
                heads.append(sum(w[j] * v[j][kv * dh:(kv + 1) * dh] for j in range(t + 1)))
            out.append(sd[p + 'self_attn.o_proj.weight'] @ torch.cat(heads))
        h = [h[t] + out[t] for t in range(len(h))]
        n = [_viln(sd, cfg, sd[p + 'post_attention_layernorm.weight'], f'{i}.post_attention_layernorm', x, Vc, h_in[t])
             for t, x in enumerate(h)]
        h = [h[t] + _lin(sd, p + 'mlp.down_proj', torch.nn.functional.silu(_lin(sd, p + 'mlp.gate_proj', n[t]))
                         * _lin(sd, p + 'mlp.up_proj', n[t])) for t in range(len(h))]
    n = [_viln(sd, cfg, sd['model.norm.weight'], 'final.norm', x, Vc) for x in h]
    head = sd['model.embed_tokens.weight'] if tc.tie_word_embeddings else sd['lm_head.weight']
    return torch.stack([head @ x for x in n])


# ------------------------------------------------------------------------------------------------ checks


def _close(name, a, b, tol):
    err = float((a - b).abs().max())
    if not err <= tol:
        raise AssertionError(f'{name}: max abs err {err:.3e} > {tol:.1e}')
    return err


def check_model(model: LaviForConditionalGeneration, px, ids, video=None, log=print):
    """Naive-vs-vectorised and structural checks on one float64 model."""
    cfg = model.config
    sd = {k: v for k, v in model.state_dict().items()}
    ids_t = torch.tensor([ids])
    with torch.no_grad():
        feats = model.vision_features(px)
        _close('vision tower vs naive loops', feats[0], naive_vision(sd, cfg, px[0]), 1e-10)
        V = model.lavi.projector(feats)
        _close('projector vs naive', V[0], naive_projector(sd, feats[0]), 1e-10)

        out = model(ids_t, pixel_values=px, output_hidden_states=True)
        _close('decoder with image vs naive loops', out['logits'][0], naive_decoder(sd, cfg, ids, V[0]), 1e-9)
        base = model(ids_t)
        _close('text-only decoder vs naive loops', base['logits'][0], naive_decoder(sd, cfg, ids, None), 1e-9)

        if cfg.lavi_config.mode == 'lavi':
            z = copy.deepcopy(model)
            z.zero_conditioner_outputs()
            zo = z(ids_t, pixel_values=px)
            _close('LaVi with o_proj zeroed == base LLM', zo['logits'], base['logits'], 1e-12)
            diff = float((out['logits'] - base['logits']).abs().max())
            if diff < 0.05:
                raise AssertionError(f'modulation too weak: image vs text-only logits differ by {diff:.3e}')
            ho = model(ids_t, pixel_values=px, has_image=torch.tensor([0.0]))
            _close('has_image=0 == base LLM', ho['logits'], base['logits'], 1e-12)
        else:
            # the concat prefix changes the text logits
            diff = float((out['text_logits'] - base['logits']).abs().max())
            if diff < 0.05:
                raise AssertionError('concat: visual prefix has no effect')

        # causality: a prefix's logits do not depend on later tokens
        pre = model(ids_t[:, :-2], pixel_values=px)
        _close('causal prefix invariance', pre['text_logits'], out['text_logits'][:, :-2], 1e-12)

        # batching with right and left padding == unpadded (positions over real tokens only)
        T = len(ids)
        pad = 3
        b_ids = torch.zeros(2, T + pad, dtype=torch.long)
        b_mask = torch.zeros(2, T + pad, dtype=torch.long)
        b_ids[0, :T], b_mask[0, :T] = ids_t[0], 1          # right padded
        b_ids[1, pad:], b_mask[1, pad:] = ids_t[0], 1      # left padded
        bo = model(b_ids, pixel_values=px.expand(2, -1, -1, -1), attention_mask=b_mask)
        _close('batch, right padding', bo['text_logits'][0, :T], out['text_logits'][0], 1e-10)
        _close('batch, left padding', bo['text_logits'][1, pad:], out['text_logits'][0], 1e-10)

        # greedy (recompute) == teacher-forced argmax of one full forward
        toks, _ = model.generate_greedy(ids_t, pixel_values=px, max_new_tokens=6)
        full = model(torch.tensor([ids + toks]), pixel_values=px)['text_logits'][0]
        tf = full[T - 1:-1].argmax(-1).tolist()
        if tf != toks:
            raise AssertionError(f'greedy {toks} != teacher-forced {tf}')

        if video is not None:
            vt = model.encode_video(video)
            Vf = model.encode_image(video)
            _close('video pooling vs naive bilinear', vt[0], naive_video_tokens(sd, cfg, Vf), 1e-12)
            vo = model(ids_t, visual_tokens=vt)
            _close('video decoder vs naive loops', vo['logits'][0], naive_decoder(sd, cfg, ids, vt[0]), 1e-9)
    log(f'  ok: naive loops, zero-o_proj/text-only == base, causality, padding, greedy ({cfg.lavi_config.mode})')


def check_safetensors_roundtrip(log=print):
    g = torch.Generator().manual_seed(5)
    ts = {
        'a.f32': torch.randn(3, 5, generator=g),
        'b.bf16': torch.randn(7, generator=g).to(torch.bfloat16),
        'c.u8': torch.randint(0, 256, (2, 3, 3), generator=g).to(torch.uint8),
        'd.i32': torch.randint(-1000, 1000, (5,), generator=g).to(torch.int32),
        'e.f64': torch.randn(2, generator=g, dtype=torch.float64),
        'f.scalar': torch.tensor(1.5),
    }
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, 'x.safetensors')
        save_safetensors(p, ts, {'k': 'v'})
        back = load_safetensors(p)
        assert safetensors_metadata(p) == {'k': 'v'}
        with open(p, 'rb') as f:
            n = int.from_bytes(f.read(8), 'little')
        assert n % 8 == 0
        import json
        with open(p, 'rb') as f:
            hdr = json.loads(f.read(8 + n)[8:])
        for k, t in ts.items():
            assert back[k].dtype == t.dtype and back[k].shape == t.shape and torch.equal(back[k], t), k
            assert hdr[k]['data_offsets'][0] % t.element_size() == 0, k
    log('  ok: safetensors round trip (F32, BF16, U8, I32, F64, scalar; aligned offsets; metadata)')


def check_training_smoke(cfg: ModelConfig, log=print):
    """Fresh model (HF init, o_proj zero) in float32: a few Adam steps on projector + conditioners (or the
    projector for concat) lower the loss on a fixed batch."""
    torch.manual_seed(0)
    cfg = copy.deepcopy(cfg)
    m = LaviForConditionalGeneration(cfg)
    m.init_weights(std=0.1)
    params = m.set_trainable(vision=False, projector=True, conditioners=True, llm=False)
    S = cfg.vision_config.image_size
    px = torch.randn(4, 3, S, S)
    ids = torch.randint(0, cfg.text_config.vocab_size, (4, 6))
    labels = ids.clone()
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(8):
        loss = m(ids, pixel_values=px, labels=labels)['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    if not losses[-1] < losses[0]:
        raise AssertionError(f'training smoke: loss did not go down {losses}')
    log(f'  ok: training smoke ({cfg.lavi_config.mode}): loss {losses[0]:.3f} -> {losses[-1]:.3f}')


def verify_fixture(directory: str, log=print):
    """Reloads a written fixture and recomputes its goldens (float64 from the stored weights)."""
    m = LaviForConditionalGeneration.from_pretrained(directory, dtype=torch.float64)
    gold = load_safetensors(os.path.join(directory, 'golden.safetensors'))
    px = gold['pixel_values'].double()
    ids = gold['input_ids'].long()
    with torch.no_grad():
        out = m(ids, pixel_values=px)
        _close(f'{directory}: logits', out['text_logits'][0].float(), gold['logits'], 1e-5)
        pre = m.vision_features(px)
        _close(f'{directory}: vision_features', pre.float(), gold['vision_features'], 1e-5)
        toks, _ = m.generate_greedy(ids, pixel_values=px, max_new_tokens=gold['greedy_tokens'].numel())
        assert toks == gold['greedy_tokens'].tolist(), directory
        if 'text_only_logits' in gold:
            _close(f'{directory}: text_only_logits', m(ids)['logits'][0].float(), gold['text_only_logits'], 1e-5)
    log(f'  ok: {os.path.basename(directory)} reloads and reproduces its goldens')


def main():
    base = os.path.join(ROOT, 'test', 'fixtures', 'model')
    check_safetensors_roundtrip()
    for name in sorted(os.listdir(base)):
        d = os.path.join(base, name)
        if not os.path.isdir(d):
            continue
        m = LaviForConditionalGeneration.from_pretrained(d, dtype=torch.float64)
        gold = load_safetensors(os.path.join(d, 'golden.safetensors'))
        video = gold['video_pixel_values'].double() if 'video_pixel_values' in gold else None
        check_model(m, gold['pixel_values'].double(), gold['input_ids'][0].tolist(), video)
        verify_fixture(d)
        check_training_smoke(m.config)


if __name__ == '__main__':
    main()
