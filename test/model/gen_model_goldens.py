"""Builds the tiny LaVi checkpoints and golden outputs in test/fixtures/model/ (deterministic, ~1 min on 2 cores).

    /usr/bin/python3 test/model/gen_model_goldens.py            # checks, then writes every fixture
    /usr/bin/python3 test/model/gen_model_goldens.py --no-checks

Every checkpoint: config.json, model.safetensors (F32, or BF16 for lavi-tied), golden.safetensors (float64
results stored as F32; ids as I32; the RGB image as U8). test/fixtures/model/manifest.json describes them.
Goldens are computed in float64 from exactly the weights stored in the file (BF16-rounded for lavi-tied).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'models', 'reference'))
sys.path.insert(0, HERE)

from lavi_torch import (  # noqa: E402
    LaviConfig, LaviForConditionalGeneration, ModelConfig, RMSNorm, TextConfig, VideoConfig, VisionConfig, preprocess_rgb8,
    save_safetensors,
)
import check_reference  # noqa: E402

OUT = os.path.join(ROOT, 'test', 'fixtures', 'model')
N_GREEDY = 20
DELTA_RMS_TARGET = 0.4   # o_proj is rescaled so that the deltas' RMS is about this (modulation clearly visible)
MIN_MARGIN = 0.02        # every greedy step's top1 - top2 logit gap is at least this (f32 engines agree)

# ------------------------------------------------------------------------------------------------ checkpoints

SPECS = {
    # LaVi, GQA 4q/2kv, untied, ViLN on both norms of every layer, modulate both, LN_v, biases; 5x5 grid (odd,
    # so video pooling 5 -> 3 exercises non-integer bilinear scale).
    'lavi-gqa': dict(
        seed=101, weights_dtype='float32', prompt_len=8, video_frames=2,
        vision=dict(image_size=35, patch_size=7, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-6, hidden_act='gelu_pytorch_tanh',
                    use_post_layernorm=False, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
        text=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=128,
                  tie_word_embeddings=False, attention_bias=True),
        lavi=dict(mode='lavi', viln_norms=['input_layernorm', 'post_attention_layernorm'], every_k=1,
                  modulate_final_norm=False, modulate='both', conditioner_width=16, conditioner_heads=2,
                  conditioner_ln_v=True, conditioner_ln_eps=1e-6, conditioner_bias=True),
        video=dict(num_frames=2, pool=2, frame_embedding=True, max_frames=4),
        eos=[127],
    ),
    # LaVi, tied embeddings, MHA, d 64, 3 layers, every_k 2 (layers 0 and 2), input_layernorm only, 'scale' only,
    # final norm modulated, no LN_v, no conditioner biases; patch 14, GELU-erf vision with post_layernorm and
    # CLIP mean/std; weights stored BF16.
    'lavi-tied': dict(
        seed=202, weights_dtype='bfloat16', prompt_len=7, video_frames=0,
        vision=dict(image_size=28, patch_size=14, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-6, hidden_act='gelu',
                    use_post_layernorm=True, image_mean=[0.48145466, 0.4578275, 0.40821073],
                    image_std=[0.26862954, 0.26130258, 0.27577711]),
        text=dict(vocab_size=160, hidden_size=64, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=128,
                  tie_word_embeddings=True, attention_bias=True),
        lavi=dict(mode='lavi', viln_norms=['input_layernorm'], every_k=2, modulate_final_norm=True,
                  modulate='scale', conditioner_width=16, conditioner_heads=2, conditioner_ln_v=False,
                  conditioner_ln_eps=1e-6, conditioner_bias=False),
        video=dict(num_frames=2, pool=2, frame_embedding=False, max_frames=4),
        eos=[158, 159],
    ),
    # LLaVA-style concat baseline, GQA 6q/2kv (3 query heads per kv head), d 48.
    'concat-gqa': dict(
        seed=303, weights_dtype='float32', prompt_len=6, video_frames=2,
        vision=dict(image_size=28, patch_size=7, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, layer_norm_eps=1e-6, hidden_act='gelu_pytorch_tanh',
                    use_post_layernorm=False, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
        text=dict(vocab_size=112, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=6,
                  num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=128,
                  tie_word_embeddings=False, attention_bias=True),
        lavi=dict(mode='concat', viln_norms=['input_layernorm', 'post_attention_layernorm'], every_k=1,
                  modulate_final_norm=False, modulate='both', conditioner_width=16, conditioner_heads=2,
                  conditioner_ln_v=True, conditioner_ln_eps=1e-6, conditioner_bias=True),
        video=dict(num_frames=2, pool=2, frame_embedding=True, max_frames=4),
        eos=[111],
    ),
    # LaVi, 'shift' only on post_attention_layernorm, MQA (4q/1kv), no attention biases, GELU-erf vision,
    # eps 1e-5, theta 5e5, single conditioner head.
    'lavi-shift': dict(
        seed=404, weights_dtype='float32', prompt_len=8, video_frames=0,
        vision=dict(image_size=28, patch_size=7, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=48, layer_norm_eps=1e-5, hidden_act='gelu',
                    use_post_layernorm=False, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
        text=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=1, rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=128,
                  tie_word_embeddings=False, attention_bias=False),
        lavi=dict(mode='lavi', viln_norms=['post_attention_layernorm'], every_k=1, modulate_final_norm=False,
                  modulate='shift', conditioner_width=16, conditioner_heads=1, conditioner_ln_v=True,
                  conditioner_ln_eps=1e-5, conditioner_bias=True),
        video=dict(num_frames=2, pool=2, frame_embedding=False, max_frames=4),
        eos=[99],
    ),
    # LaVi with the decode-oriented options: one LN_v/k_proj/v_proj for every site (lavi.shared_kv.*), K/U stored
    # bf16; GQA 4q/2kv, both norms of every layer, final norm modulated, modulate both, 2 conditioner heads.
    'lavi-sharedkv': dict(
        seed=505, weights_dtype='float32', prompt_len=8, video_frames=0,
        vision=dict(image_size=28, patch_size=7, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-6, hidden_act='gelu_pytorch_tanh',
                    use_post_layernorm=False, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
        text=dict(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=128,
                  tie_word_embeddings=False, attention_bias=True),
        lavi=dict(mode='lavi', viln_norms=['input_layernorm', 'post_attention_layernorm'], every_k=1,
                  modulate_final_norm=True, modulate='both', conditioner_width=16, conditioner_heads=2,
                  conditioner_ln_v=True, conditioner_ln_eps=1e-6, conditioner_bias=True, kv_dtype='bf16',
                  shared_visual_kv=True),
        video=dict(num_frames=2, pool=2, frame_embedding=False, max_frames=4),
        eos=[119],
    ),
    # LaVi with one conditioner per layer (conditioner_per_layer: lavi.conditioners.{layer}.*, o_proj [2·2d, r] for
    # the layer's two norms, query from the input norm's input), shared bf16 K/U, final norm with its own conditioner.
    'lavi-perlayer': dict(
        seed=808, weights_dtype='float32', prompt_len=7, video_frames=0,
        vision=dict(image_size=28, patch_size=7, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-6, hidden_act='gelu_pytorch_tanh',
                    use_post_layernorm=False, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
        text=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=128,
                  tie_word_embeddings=True, attention_bias=True),
        lavi=dict(mode='lavi', viln_norms=['input_layernorm', 'post_attention_layernorm'], every_k=1,
                  modulate_final_norm=True, modulate='both', conditioner_width=16, conditioner_heads=2,
                  conditioner_ln_v=True, conditioner_ln_eps=1e-6, conditioner_bias=True, kv_dtype='bf16',
                  shared_visual_kv=True, conditioner_per_layer=True),
        video=dict(num_frames=2, pool=2, frame_embedding=False, max_frames=4),
        eos=[99],
    ),
    # LaVi with K/U stored f16, per-site K/U, every_k 2 on input_layernorm only (the 'fewer sites' axis).
    'lavi-kvf16': dict(
        seed=606, weights_dtype='float32', prompt_len=7, video_frames=0,
        vision=dict(image_size=28, patch_size=7, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-6, hidden_act='gelu_pytorch_tanh',
                    use_post_layernorm=False, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
        text=dict(vocab_size=110, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=128,
                  tie_word_embeddings=False, attention_bias=True),
        lavi=dict(mode='lavi', viln_norms=['input_layernorm'], every_k=2, modulate_final_norm=False,
                  modulate='both', conditioner_width=16, conditioner_heads=2, conditioner_ln_v=True,
                  conditioner_ln_eps=1e-6, conditioner_bias=True, kv_dtype='f16', shared_visual_kv=False),
        video=dict(num_frames=2, pool=2, frame_embedding=False, max_frames=4),
        eos=[109],
    ),
    # LaVi whose vision tower has a convolutional stem (stem_channels: two 2x2 stride-2 convolutions + GELU before a
    # 2x2 patch embedding, 32 px -> 4x4 tokens): the shipped VQA checkpoints' tower (issue 18).
    'lavi-stem': dict(
        seed=707, weights_dtype='float32', prompt_len=6, video_frames=0,
        vision=dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-6, hidden_act='gelu_pytorch_tanh',
                    use_post_layernorm=False, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                    stem_channels=[6, 10]),
        text=dict(vocab_size=90, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=128,
                  tie_word_embeddings=True, attention_bias=True),
        lavi=dict(mode='lavi', viln_norms=['input_layernorm', 'post_attention_layernorm'], every_k=1,
                  modulate_final_norm=False, modulate='both', conditioner_width=16, conditioner_heads=2,
                  conditioner_ln_v=True, conditioner_ln_eps=1e-6, conditioner_bias=True),
        video=dict(num_frames=2, pool=2, frame_embedding=False, max_frames=4),
        eos=[89],
    ),
}


def make_config(spec) -> ModelConfig:
    return ModelConfig(VisionConfig(**spec['vision']), TextConfig(**spec['text']), LaviConfig(**spec['lavi']),
                       VideoConfig(**spec['video']), bos_token_id=None, eos_token_ids=list(spec['eos']),
                       torch_dtype=spec['weights_dtype'])


# ------------------------------------------------------------------------------------------------ init


@torch.no_grad()
def golden_init(model: LaviForConditionalGeneration, g: torch.Generator) -> None:
    """Random weights with O(1) activations everywhere (unlike HF's 0.02 init, which would make every test
    signal tiny): norms 1 + 0.1 N, biases 0.1 N, token embeddings N(0,1) (N(0,0.09) when tied), other matrices N(0, 1/fan_in)."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, (torch.nn.LayerNorm, RMSNorm))
                   for p in m.parameters()}
    for name, p in model.named_parameters():
        leaf = name.rsplit('.', 1)[-1]
        if id(p) in norm_params and leaf == 'weight':
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
        elif leaf == 'bias':
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        elif 'embed_tokens' in name:
            # tied: the same matrix is the lm_head, so keep logits O(1-3)
            std = 0.3 if model.config.text_config.tie_word_embeddings else 1.0
            p.copy_(std * torch.randn(p.shape, generator=g))
        elif 'position_embedding' in name or 'frame_embedding' in name:
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
        else:
            fan_in = p[0].numel()
            scale = 1.5 if name.endswith('q_proj.weight') else 1.0  # a little sharper attention
            p.copy_(scale * torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


@torch.no_grad()
def calibrate_o_proj(model, px, ids) -> float:
    """Rescales every conditioner o_proj weight so the deltas' RMS over the prompt is DELTA_RMS_TARGET."""
    if not len(model.lavi.conditioners):
        return 0.0
    out = model(ids, pixel_values=px, output_deltas=True)
    d = torch.cat([v.flatten() for v in out['deltas'].values()])
    rms = float(d.pow(2).mean().sqrt())
    for c in model.lavi.all_conditioners():
        c.o_proj.weight.mul_(DELTA_RMS_TARGET / rms)
    return rms


def round_weights(model, dtype) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(p.dtype))


def random_image(S: int, g: torch.Generator) -> torch.Tensor:
    """An RGB8 [S, S, 3] test image: smooth colour gradients plus noise, full 0..255 range."""
    y = torch.linspace(0, 1, S)[:, None].expand(S, S)
    x = torch.linspace(0, 1, S)[None, :].expand(S, S)
    base = torch.stack([x, y, 1 - (x + y) / 2], -1) * 255
    noise = torch.randn(S, S, 3, generator=g) * 60
    img = (base + noise).round().clamp(0, 255).to(torch.uint8)
    img[0, 0] = torch.tensor([0, 128, 255], dtype=torch.uint8)  # exact extremes present
    return img


# ------------------------------------------------------------------------------------------------ goldens


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def build(name: str, spec: dict, run_checks: bool, log=print) -> dict:
    t0 = time.time()
    cfg = make_config(spec)
    g = torch.Generator().manual_seed(spec['seed'])
    model = LaviForConditionalGeneration(cfg)
    golden_init(model, g)
    S = cfg.vision_config.image_size

    img = random_image(S, g)
    px64 = preprocess_rgb8(img, cfg.vision_config)          # float64
    px = px64.to(torch.float32).double()                    # the stored F32 pixels are the model input
    Fv = spec['video_frames']
    video = torch.cat([preprocess_rgb8(random_image(S, g), cfg.vision_config) for _ in range(Fv)]) \
        .float().double() if Fv else None

    # calibrate the conditioners on a provisional prompt, then fix the storage precision
    tmp_ids = torch.randint(0, cfg.text_config.vocab_size, (1, spec['prompt_len']), generator=g)
    raw_rms = calibrate_o_proj(model.double(), px, tmp_ids)
    model = model.float()
    wdt = torch.bfloat16 if spec['weights_dtype'] == 'bfloat16' else torch.float32
    round_weights(model, wdt)
    model = model.double()
    model.eval()

    # choose a prompt whose greedy continuations (image and text-only) have no near-ties
    V = model.encode_image(px).detach()
    for attempt in range(200):
        ids = torch.randint(0, cfg.text_config.vocab_size, (1, spec['prompt_len']), generator=g)
        toks, margins = model.generate_greedy(ids, visual_tokens=V, max_new_tokens=N_GREEDY)
        if min(margins) < MIN_MARGIN:
            continue
        if cfg.lavi_config.mode == 'lavi':
            t_toks, t_margins = model.generate_greedy(ids, max_new_tokens=N_GREEDY)
            if min(t_margins) < MIN_MARGIN:
                continue
        break
    else:
        raise RuntimeError(f'{name}: no prompt without near-ties')

    if run_checks:
        check_reference.check_model(model, px, ids[0].tolist(), video, log=log)

    gold = {}
    with torch.no_grad():
        gold['image_rgb8'] = img.contiguous()
        gold['pixel_values_from_rgb8'] = f32(px64)
        gold['pixel_values'] = f32(px)
        gold['input_ids'] = ids.to(torch.int32)
        feats = model.vision_features(px)
        gold['vision_features'] = f32(feats)
        gold['projected'] = f32(V)
        out = model(ids, visual_tokens=V, output_hidden_states=True, output_deltas=True)
        for i, hs in enumerate(out['hidden_states']):
            gold[f'hidden_states.{i}'] = f32(hs)
        gold['last_layer_output'] = f32(out['last_layer_output'])
        gold['logits'] = f32(out['text_logits'][0])
        gold['greedy_tokens'] = torch.tensor(toks, dtype=torch.int32)
        gold['greedy_margins'] = torch.tensor(margins, dtype=torch.float32)
        if cfg.lavi_config.mode == 'lavi':
            for site, dl in out['deltas'].items():
                gold[f'viln_delta.{site}'] = f32(dl)
            first = cfg.conditioner_sites()[0]
            K, U = model.prepare_conditioners(V)[first]
            gold[f'conditioner_k.{first[0]}.{first[1]}'] = f32(K)
            gold[f'conditioner_v.{first[0]}.{first[1]}'] = f32(U)
            gold['text_only_logits'] = f32(model(ids)['logits'][0])
            gold['text_only_greedy_tokens'] = torch.tensor(t_toks, dtype=torch.int32)
            gold['text_only_greedy_margins'] = torch.tensor(t_margins, dtype=torch.float32)
        if video is not None:
            gold['video_pixel_values'] = f32(video)
            gold['video_projected_frames'] = f32(model.encode_image(video))
            vt = model.encode_video(video)
            gold['video_visual_tokens'] = f32(vt)
            gold['video_logits'] = f32(model(ids, visual_tokens=vt)['text_logits'][0])

        # expected error of a float32 engine: same weights, float32 arithmetic
        m32 = copy.deepcopy(model).float()
        o32 = m32(ids.long(), pixel_values=px.float())['text_logits'][0]
        f32_err = float((o32.double() - out['text_logits'][0]).abs().max())

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model_f = copy.deepcopy(model).float()
    model_f.save_pretrained(d, dtype=wdt, metadata={'generator': 'test/model/gen_model_goldens.py', 'fixture': name})
    save_safetensors(os.path.join(d, 'golden.safetensors'), gold,
                     {'generator': 'test/model/gen_model_goldens.py', 'fixture': name, 'compute_dtype': 'float64'})
    if run_checks:
        check_reference.verify_fixture(d, log=log)
    mod_effect = float((gold['logits'] - gold['text_only_logits']).abs().max()) if 'text_only_logits' in gold else None
    log(f'{name}: {sum(p.numel() for p in model.parameters())} params, prompt attempts {attempt + 1}, '
        f'raw delta rms {raw_rms:.3g}, min margin {min(margins):.3f}, f32 logits err {f32_err:.2e}'
        + (f', |image - text-only logits| max {mod_effect:.3f}' if mod_effect is not None else '')
        + f' ({time.time() - t0:.1f}s)')
    return {'config': cfg, 'gold': gold, 'f32_err': f32_err, 'dir': d, 'spec': spec,
            'n_params': sum(p.numel() for p in model.parameters()),
            'weights': model_f.checkpoint_tensors(wdt)}


# ------------------------------------------------------------------------------------------------ manifest

MEANING = {
    'image_rgb8': 'raw test image, RGB8 row-major [S, S, 3] at native size (no resize needed)',
    'pixel_values_from_rgb8': 'preprocess(image_rgb8): x/255, then (x - image_mean[c]) / image_std[c], as [1, 3, S, S]',
    'pixel_values': 'the vision input used for every golden below (= pixel_values_from_rgb8)',
    'input_ids': 'text prompt token ids [1, T]',
    'vision_features': 'vision tower output [1, N, Dv] (after post_layernorm iff use_post_layernorm), before the projector',
    'projected': 'V = projector(vision_features) [1, N_v, d]',
    'hidden_states.0': 'decoder input embeddings [1, L, d] (concat: [V ; embed(ids)], L = N_v + T; LaVi: L = T)',
    'hidden_states.{i}': '1 <= i < n_layers: output of decoder layer i-1 (residual stream) [1, L, d]',
    'hidden_states.{n_layers}': 'output of the final norm (ViLN if modulate_final_norm) [1, L, d] (HF convention)',
    'last_layer_output': 'output of the last decoder layer, before the final norm [1, L, d]',
    'logits': 'logits at the text positions [T, vocab]; row t predicts the token after input_ids[t] '
              '(concat: rows are positions N_v .. N_v+T-1 of the sequence)',
    'greedy_tokens': 'greedy continuation of input_ids with the image, 20 tokens, argmax (first index on ties), '
                     'never stopping at eos',
    'greedy_margins': 'top1 - top2 logit at each greedy step (all >= 0.02, so a float32 engine must agree)',
    'viln_delta.{layer}.{norm}': 'LaVi: conditioner output delta = a o_proj^T + b [1, T, m*d] for every ViLN '
                                 '(m = 2 for modulate both: [dgamma ; dbeta]; m = 1 otherwise); layer "final" '
                                 'norm "norm" is model.norm',
    'conditioner_k.{layer}.{norm}': 'LaVi: K = LN_v(V) k_proj^T (+ bias) [1, N_v, r] of the first ViLN site',
    'conditioner_v.{layer}.{norm}': 'LaVi: U = LN_v(V) v_proj^T (+ bias) [1, N_v, r] of the first ViLN site',
    'text_only_logits': 'LaVi: logits [T, vocab] of input_ids with no image (= base Qwen2)',
    'text_only_greedy_tokens': 'LaVi: greedy continuation with no image, 20 tokens',
    'text_only_greedy_margins': 'LaVi: top1 - top2 logit at each text-only greedy step',
    'video_pixel_values': 'video: F normalised frames [F, 3, S, S]',
    'video_projected_frames': 'video: projector output of each frame [F, N, d], before pooling',
    'video_visual_tokens': 'video: V_video [1, F * ceil(g/pool)^2, d]: each g x g grid bilinearly resized '
                           '(align_corners=False, no antialias) to ceil(g/pool)^2, + frame_embedding[f], frames '
                           'concatenated in order',
    'video_logits': 'video: logits [T, vocab] of input_ids with V_video as the visual input',
}


def _meaning(name: str, n_layers: int) -> str:
    if name in MEANING:
        return MEANING[name]
    if name.startswith('hidden_states.'):
        i = int(name.split('.')[1])
        return MEANING['hidden_states.0'] if i == 0 else (
            MEANING['hidden_states.{n_layers}'] if i == n_layers else MEANING['hidden_states.{i}'])
    for p in ('viln_delta', 'conditioner_k', 'conditioner_v'):
        if name.startswith(p + '.'):
            return MEANING[p + '.{layer}.{norm}']
    raise KeyError(name)


_DT = {torch.float32: 'F32', torch.int32: 'I32', torch.uint8: 'U8', torch.bfloat16: 'BF16'}


def write_manifest(results: dict, merge: bool = False) -> None:
    """merge: keep the manifest's other checkpoints (a run with --only)."""
    ck = {}
    if merge and os.path.exists(os.path.join(OUT, 'manifest.json')):
        with open(os.path.join(OUT, 'manifest.json')) as f:
            ck = json.load(f)['checkpoints']
    for name, r in results.items():
        cfg: ModelConfig = r['config']
        gold = r['gold']
        L = cfg.text_config.num_hidden_layers
        tol = float(f'{max(1e-4, 50 * r["f32_err"]):.1g}')
        ck[name] = {
            'dir': name,
            'mode': cfg.lavi_config.mode,
            'weights_dtype': 'BF16' if r['spec']['weights_dtype'] == 'bfloat16' else 'F32',
            'n_params': r['n_params'],
            'exercises': r['spec'].get('doc', ''),
            'sizes': {
                'S': cfg.vision_config.image_size, 'P': cfg.vision_config.patch_size,
                'N_v': cfg.vision_config.num_patches, 'Dv': cfg.vision_config.hidden_size,
                'd': cfg.text_config.hidden_size, 'vocab': cfg.text_config.vocab_size,
                'T': int(gold['input_ids'].shape[1]), 'n_layers': L,
                'heads': cfg.text_config.num_attention_heads, 'kv_heads': cfg.text_config.num_key_value_heads,
                'r': cfg.lavi_config.conditioner_width, 'h_c': cfg.lavi_config.conditioner_heads,
            },
            'viln_sites': [f'{a}.{b}' for a, b in cfg.conditioner_sites()],
            'model_tensors': {k: {'dtype': _DT[v.dtype], 'shape': list(v.shape)} for k, v in sorted(r['weights'].items())},
            'golden_tensors': {k: {'dtype': _DT[v.dtype], 'shape': list(v.shape), 'meaning': _meaning(k, L)}
                               for k, v in gold.items()},
            'float32_reference_logits_max_abs_err': r['f32_err'],
            'suggested_logits_atol': tol,
        }
    manifest = {
        'format': 'lavi-model-goldens/1',
        'generator': '/usr/bin/python3 test/model/gen_model_goldens.py (reference: models/reference/lavi_torch.py)',
        'contract': 'models/README.md',
        'conventions': {
            'files': 'each checkpoint dir has config.json (models/lavi/config.ts schema), model.safetensors (weights, '
                     'contract names, every tensor is used, tied lm_head omitted), golden.safetensors (inputs and '
                     'expected outputs)',
            'compute': 'goldens computed in float64 from exactly the stored weights (BF16 ones widened exactly), '
                       'then stored as F32; ids as I32; image as U8',
            'layouts': 'batch axis kept ([1, ...]) on pixels/features/hidden states; logits are [T, vocab] with '
                       'no batch axis; greedy tokens are a flat [20] I32 vector',
            'positions': 'RoPE positions 0..L-1 over the sequence the decoder sees (LaVi: text only; concat: visual '
                         'tokens then text)',
            'hidden_states': 'HF convention: n_layers + 1 entries; .0 embeddings, .i output of layer i-1, '
                             '.n_layers after the final norm; last_layer_output is the pre-norm last layer',
            'greedy': 'argmax of the last position, appended, repeated 20 times; no eos stop; same image each step',
            'tolerance': 'suggested_logits_atol = max(1e-4, 50 x the error of the same graph run in float32); '
                         'greedy tokens must match exactly (every step has a margin >= 0.02)',
        },
        'checkpoints': ck,
    }
    text = json.dumps(manifest, indent=2)
    # keep number lists (shapes) on one line
    text = re.sub(r'\[\s*([-0-9.e, \n]+?)\s*\]', lambda m: '[' + ', '.join(m.group(1).replace(',', ' ').split()) + ']', text)
    text = re.sub(r'\{\s*"dtype": "(\w+)",\s*"shape": (\[[^\]]*\]),?(\s*"meaning": ("[^"]*"))?\s*\}',
                  lambda m: '{"dtype": "%s", "shape": %s%s}' % (m.group(1), m.group(2),
                                                              ', "meaning": ' + m.group(4) if m.group(4) else ''), text)
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        f.write(text + '\n')


DOCS = {
    'lavi-gqa': 'LaVi; GQA 4 query / 2 kv heads; untied lm_head; ViLN on input_layernorm and '
                'post_attention_layernorm of every layer; modulate both; LN_v; conditioner biases; nonzero o_proj; '
                'odd 5x5 patch grid; video goldens (2 frames, pool 2: 5x5 -> 3x3, frame embedding)',
    'lavi-tied': 'LaVi; BF16 weights; tied embeddings (no lm_head.weight); MHA; d 64, 3 layers; every_k 2 (layers '
                 '0, 2); input_layernorm only; modulate scale; final norm modulated (lavi.conditioners.final.norm); '
                 'no LN_v; no conditioner biases; patch 14; GELU-erf vision; post_layernorm; CLIP mean/std',
    'concat-gqa': 'LLaVA-style concat baseline; GQA 6 query / 2 kv heads; d 48; no conditioners; video goldens '
                  '(2 frames, 4x4 -> 2x2, frame embedding)',
    'lavi-sharedkv': 'LaVi; shared_visual_kv (lavi.shared_kv.{ln_v,k_proj,v_proj} once, per-site q_proj/o_proj); '
                     'K/U stored bf16 (kv_dtype); GQA 4 query / 2 kv heads; 3 layers, both norms + final norm '
                     'modulated; modulate both',
    'lavi-perlayer': 'LaVi; conditioner_per_layer (one conditioner per layer, lavi.conditioners.{layer}.*, deltas of '
                     'both norms from the input norm\'s input); shared bf16 K/U; final norm with its own conditioner; '
                     'tied embeddings; 3 layers',
    'lavi-kvf16': 'LaVi; K/U stored f16 (kv_dtype); per-site K/U; every_k 2 (layers 0, 2) on input_layernorm only; '
                  'GQA 4 query / 2 kv heads; 4 layers',
    'lavi-stem': 'LaVi; vision tower with a convolutional stem (stem_channels [6, 10]: 2x2 stride-2 convolutions + '
                 'GELU-tanh, then a 2x2 patch embedding; 32 px -> 4x4 tokens); tied embeddings; both norms',
    'lavi-shift': 'LaVi; modulate shift; post_attention_layernorm only; MQA 4 query / 1 kv head; no attention '
                  'biases; 1 conditioner head; eps 1e-5; rope_theta 5e5; GELU-erf vision',
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--no-checks', action='store_true')
    ap.add_argument('--only', nargs='*')
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    if not args.no_checks:
        check_reference.check_safetensors_roundtrip()
    results = {}
    for name, spec in SPECS.items():
        if args.only and name not in args.only:
            continue
        spec = {**spec, 'doc': DOCS[name]}
        results[name] = build(name, spec, not args.no_checks)
        if not args.no_checks:
            check_reference.check_training_smoke(results[name]['config'])
    write_manifest(results, merge=bool(args.only))
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f'wrote {OUT} ({total / 1024:.0f} KB) in {time.time() - t0:.1f}s')


if __name__ == '__main__':
    main()
