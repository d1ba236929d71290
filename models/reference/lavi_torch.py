"""Independent PyTorch reference of the LaVi graph.

Written from the contract in models/README.md and shared/design/lavi-spec.md (not from the TypeScript graph).
It serves two purposes:

1. golden outputs for the TypeScript engine (test/model/gen_model_goldens.py runs it in float64);
2. a trainable model: ``LaviForConditionalGeneration`` is a plain ``nn.Module`` whose ``state_dict()`` keys are
   exactly the checkpoint names of the contract, with a batched forward (padding mask, labels -> loss) for both
   modes, 'lavi' (vision through ViLN) and 'concat' (LLaVA-style visual tokens in the context).

Runs on PyTorch 1.13 (Debian's /usr/bin/python3). No dependency beyond torch and numpy; safetensors files are
read and written by the small helpers at the bottom of this file.
"""

from __future__ import annotations

import copy
import json
import math
import os
import struct
import sys
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# =============================================================================================================
# Configuration (the config.json schema of models/lavi/config.ts)
# =============================================================================================================

VILN_NORMS = ('input_layernorm', 'post_attention_layernorm')


@dataclass
class VisionConfig:
    image_size: int
    patch_size: int
    num_channels: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float
    hidden_act: str  # 'gelu_pytorch_tanh' | 'gelu'
    use_post_layernorm: bool = False
    image_mean: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    # [ours, not SigLIP] a convolutional stem before the patch embedding: one 2x2 stride-2 convolution + hidden_act per
    # entry (its output channels), so the patch embedding's kernel is patch_size / 2^len(stem_channels). Empty: none.
    stem_channels: List[int] = field(default_factory=list)
    # [ours] how pictures are resized to image_size: a PIL filter number (1 lanczos, 2 bilinear, 3 bicubic, 4 box,
    # 5 hamming; Image.resize, antialiased, 8-bit), or None: bilinear, half-pixel, no antialiasing, in float
    # (vqa_data.to_model_pixels; models/image/preprocess.ts)
    resample: Optional[int] = None

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid


@dataclass
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class LaviConfig:
    mode: str = 'lavi'  # 'lavi' | 'concat'
    viln_norms: List[str] = field(default_factory=lambda: list(VILN_NORMS))
    every_k: int = 1
    modulate_final_norm: bool = False
    modulate: str = 'both'  # 'both' | 'scale' | 'shift'
    conditioner_width: int = 512
    conditioner_heads: int = 8
    conditioner_ln_v: bool = True
    conditioner_ln_eps: float = 1e-6
    conditioner_bias: bool = True
    kv_dtype: str = 'f32'  # 'f32' | 'bf16' | 'f16': storage of K/U (f32 projections rounded once per image)
    shared_visual_kv: bool = False  # LN_v/k_proj/v_proj once (lavi.shared_kv.*), per-site q_proj/o_proj
    conditioner_per_layer: bool = False  # one conditioner per modulated layer (lavi.conditioners.{layer}.*), query from
    # the input of its first modulated norm, o_proj the deltas of all its modulated norms; the final norm keeps its own


@dataclass
class VideoConfig:
    num_frames: int = 8
    pool: int = 2
    frame_embedding: bool = True
    max_frames: int = 64


@dataclass
class ModelConfig:
    vision_config: VisionConfig
    text_config: TextConfig
    lavi_config: LaviConfig = field(default_factory=LaviConfig)
    video_config: VideoConfig = field(default_factory=VideoConfig)
    bos_token_id: Optional[int] = None
    eos_token_ids: List[int] = field(default_factory=list)
    torch_dtype: Optional[str] = None
    model_type: str = 'lavi'

    # -- conditioner placement (same rule as config.ts modulatedLayers) --
    def modulated_layers(self) -> List[int]:
        if self.lavi_config.mode != 'lavi':
            return []
        k = self.lavi_config.every_k
        return [i for i in range(self.text_config.num_hidden_layers) if i % k == 0]

    def conditioner_sites(self) -> List[Tuple[str, str]]:
        """(layer key, norm name) of every ViLN, in execution order; layer key is str(i) or 'final'."""
        sites = []
        for i in self.modulated_layers():
            for n in VILN_NORMS:  # execution order inside a layer
                if n in self.lavi_config.viln_norms:
                    sites.append((str(i), n))
        if self.lavi_config.mode == 'lavi' and self.lavi_config.modulate_final_norm:
            sites.append(('final', 'norm'))
        return sites

    def to_dict(self) -> dict:
        d = {
            'model_type': 'lavi',
            'vision_config': {k: v for k, v in asdict(self.vision_config).items()
                              if (k != 'stem_channels' or v) and (k != 'resample' or v is not None)},  # SigLIP's fields, ours when set
            'text_config': asdict(self.text_config),
            'lavi_config': asdict(self.lavi_config),
            'video_config': asdict(self.video_config),
            'bos_token_id': self.bos_token_id,
            'eos_token_ids': list(self.eos_token_ids),
        }
        if self.torch_dtype is not None:
            d['torch_dtype'] = self.torch_dtype
        return d

    @staticmethod
    def from_dict(j: dict) -> 'ModelConfig':
        if j.get('model_type') != 'lavi':
            raise ValueError(f"model_type must be 'lavi', got {j.get('model_type')!r}")
        vj = dict(j['vision_config'])
        vision = VisionConfig(
            image_size=int(vj['image_size']), patch_size=int(vj['patch_size']), num_channels=int(vj['num_channels']),
            hidden_size=int(vj['hidden_size']), num_hidden_layers=int(vj['num_hidden_layers']),
            num_attention_heads=int(vj['num_attention_heads']), intermediate_size=int(vj['intermediate_size']),
            layer_norm_eps=float(vj['layer_norm_eps']), hidden_act=vj['hidden_act'],
            use_post_layernorm=bool(vj.get('use_post_layernorm', False)),
            image_mean=list(vj.get('image_mean', [0.5, 0.5, 0.5])), image_std=list(vj.get('image_std', [0.5, 0.5, 0.5])),
            stem_channels=[int(c) for c in vj.get('stem_channels', [])],
            resample=None if vj.get('resample') is None else int(vj['resample']),
        )
        if vision.resample is not None and vision.resample not in (1, 2, 3, 4, 5):
            raise ValueError(f'vision_config.resample must be a PIL filter number 1..5, got {vision.resample!r}')
        if vision.hidden_act not in ('gelu_pytorch_tanh', 'gelu'):
            raise ValueError(f'vision_config.hidden_act {vision.hidden_act!r} not supported')
        if vision.image_size % vision.patch_size:
            raise ValueError('image_size must be a multiple of patch_size')
        if vision.patch_size % (1 << len(vision.stem_channels)):
            raise ValueError('patch_size must be a multiple of 2^len(stem_channels)')
        tj = dict(j['text_config'])
        text = TextConfig(
            vocab_size=int(tj['vocab_size']), hidden_size=int(tj['hidden_size']),
            intermediate_size=int(tj['intermediate_size']), num_hidden_layers=int(tj['num_hidden_layers']),
            num_attention_heads=int(tj['num_attention_heads']), num_key_value_heads=int(tj['num_key_value_heads']),
            rms_norm_eps=float(tj['rms_norm_eps']), rope_theta=float(tj['rope_theta']),
            max_position_embeddings=int(tj['max_position_embeddings']),
            tie_word_embeddings=bool(tj['tie_word_embeddings']), attention_bias=bool(tj.get('attention_bias', True)),
        )
        if text.hidden_size % text.num_attention_heads or text.num_attention_heads % text.num_key_value_heads:
            raise ValueError('text_config: heads do not divide')
        lj = {**asdict(LaviConfig()), **(j.get('lavi_config') or {})}
        lavi = LaviConfig(**{k: lj[k] for k in asdict(LaviConfig()).keys()})
        lavi.viln_norms = [n for n in VILN_NORMS if n in lavi.viln_norms]
        if lavi.mode not in ('lavi', 'concat') or lavi.modulate not in ('both', 'scale', 'shift'):
            raise ValueError('lavi_config: bad mode/modulate')
        if lavi.conditioner_width % lavi.conditioner_heads:
            raise ValueError('lavi_config: conditioner_width not divisible by conditioner_heads')
        if lavi.kv_dtype not in KV_DTYPES:
            raise ValueError(f'lavi_config: kv_dtype must be one of {sorted(KV_DTYPES)}, got {lavi.kv_dtype!r}')
        vdj = {**asdict(VideoConfig()), **(j.get('video_config') or {})}
        video = VideoConfig(**{k: vdj[k] for k in asdict(VideoConfig()).keys()})
        eos = j.get('eos_token_ids')
        if eos is None:
            e = j.get('eos_token_id')
            eos = [] if e is None else (list(e) if isinstance(e, list) else [e])
        return ModelConfig(vision, text, lavi, video, j.get('bos_token_id'), [int(e) for e in eos], j.get('torch_dtype'))

    @staticmethod
    def load(path: str) -> 'ModelConfig':
        with open(path) as f:
            return ModelConfig.from_dict(json.load(f))

    def save(self, path: str) -> None:
        with open(path, 'w') as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write('\n')


# =============================================================================================================
# Shared pieces
# =============================================================================================================


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the last axis (x-hat of the spec)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """HF rotate_half: [x1, x2] -> [-x2, x1] with x1, x2 the two halves of the last axis."""
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos, sin of shape positions.shape + [head_dim]; angles computed in float64."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    ang = positions.to(torch.float64)[..., None] * inv_freq
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, Dh]; cos/sin [B, L, Dh]."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def _vision_act(name: str):
    if name == 'gelu_pytorch_tanh':
        return lambda x: F.gelu(x, approximate='tanh')
    if name == 'gelu':
        return F.gelu
    raise ValueError(name)


# =============================================================================================================
# Vision tower (SigLIP-style ViT), names vision_model.*
# =============================================================================================================


class VisionEmbeddings(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        chans = [c.num_channels] + list(c.stem_channels)
        # stem.{i}: 2x2 stride-2 convolutions, each followed by the tower's activation (absent without stem_channels)
        self.stem = nn.ModuleList([nn.Conv2d(chans[i], chans[i + 1], 2, stride=2) for i in range(len(c.stem_channels))])
        self.stem_act = _vision_act(c.hidden_act)
        p = c.patch_size >> len(c.stem_channels)
        self.patch_embedding = nn.Conv2d(chans[-1], c.hidden_size, p, stride=p)
        self.position_embedding = nn.Embedding(c.num_patches, c.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.to(self.patch_embedding.weight.dtype)
        for conv in self.stem:
            x = self.stem_act(conv(x))
        x = self.patch_embedding(x)  # [B, Dv, g, g]
        x = x.flatten(2).transpose(1, 2)  # row-major patches -> [B, N, Dv]
        return x + self.position_embedding.weight[None]


class VisionAttention(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        D = c.hidden_size
        self.heads = c.num_attention_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(D, D) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        H, dh = self.heads, D // self.heads
        q, k, v = (p(x).view(B, N, H, dh).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        a = torch.softmax(q @ k.transpose(-1, -2) * dh ** -0.5, dim=-1)  # full, no mask
        return self.out_proj((a @ v).transpose(1, 2).reshape(B, N, D))


class VisionMLP(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)
        self.act = _vision_act(c.hidden_act)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.self_attn = VisionAttention(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = VisionMLP(c)

    def forward(self, h):
        h = h + self.self_attn(self.layer_norm1(h))
        return h + self.mlp(self.layer_norm2(h))


class VisionEncoder(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([VisionLayer(c) for _ in range(c.num_hidden_layers)])


class VisionModel(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.config = c
        self.embeddings = VisionEmbeddings(c)
        self.encoder = VisionEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps) if c.use_post_layernorm else None

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] normalised pixels -> features [B, N, Dv]."""
        h = self.embeddings(pixel_values)
        for layer in self.encoder.layers:
            h = layer(h)
        if self.post_layernorm is not None:
            h = self.post_layernorm(h)
        return h


# =============================================================================================================
# LaVi additions, names lavi.*
# =============================================================================================================


class Projector(nn.Module):
    def __init__(self, d_vis: int, d: int):
        super().__init__()
        self.linear_1 = nn.Linear(d_vis, d)
        self.linear_2 = nn.Linear(d, d)

    def forward(self, x):
        return self.linear_2(F.gelu(self.linear_1(x)))  # GELU-erf


KV_DTYPES = {'f32': None, 'bf16': torch.bfloat16, 'f16': torch.float16}


def store_kv(x: torch.Tensor, kv_dtype: str) -> torch.Tensor:
    """K/U as the engine keeps them: 'f32' as computed; 'bf16'/'f16': the float32 value rounded to nearest even
    (then used in x's dtype; gradients pass straight through the rounding)."""
    dt = KV_DTYPES[kv_dtype]
    if dt is None:
        return x
    r = x.detach().to(torch.float32).to(dt).to(x.dtype)
    return x + (r - x.detach()) if x.requires_grad else r


class VisualKV(nn.Module):
    """LN_v, k_proj, v_proj: the visual side of a conditioner (a site's own, or lavi.shared_kv)."""

    def __init__(self, d: int, lc: LaviConfig):
        super().__init__()
        r = lc.conditioner_width
        self.kv_dtype = lc.kv_dtype
        self.ln_v = nn.LayerNorm(d, eps=lc.conditioner_ln_eps) if lc.conditioner_ln_v else None
        self.k_proj = nn.Linear(d, r, bias=lc.conditioner_bias)
        self.v_proj = nn.Linear(d, r, bias=lc.conditioner_bias)

    def prepare(self, V: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """K, U [B, N_v, r] from the visual tokens; computed once per image, stored in kv_dtype."""
        Vn = self.ln_v(V) if self.ln_v is not None else V
        return store_kv(self.k_proj(Vn), self.kv_dtype), store_kv(self.v_proj(Vn), self.kv_dtype)


class Conditioner(nn.Module):
    """Attention conditioner C(x_hat, V) -> delta [.., m*d] of one ViLN. With shared_visual_kv it has no
    ln_v/k_proj/v_proj of its own (LaviModule.shared_kv computes K, U once for every site)."""

    def __init__(self, d: int, lc: LaviConfig, n_sites: int = 1):
        super().__init__()
        r, self.heads = lc.conditioner_width, lc.conditioner_heads
        self.kv_dtype = lc.kv_dtype
        own = not lc.shared_visual_kv
        self.ln_v = nn.LayerNorm(d, eps=lc.conditioner_ln_eps) if (own and lc.conditioner_ln_v) else None
        self.q_proj = nn.Linear(d, r, bias=lc.conditioner_bias)
        self.k_proj = nn.Linear(d, r, bias=lc.conditioner_bias) if own else None
        self.v_proj = nn.Linear(d, r, bias=lc.conditioner_bias) if own else None
        m = 2 if lc.modulate == 'both' else 1
        self.o_proj = nn.Linear(r, n_sites * m * d, bias=True)  # rows: the sites' [m*d] blocks in execution order

    def prepare(self, V: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """K, U [B, N_v, r] from the visual tokens; computed once per image, stored in kv_dtype."""
        if self.k_proj is None:
            raise ValueError('conditioner: shared_visual_kv: K, U come from LaviModule.shared_kv')
        Vn = self.ln_v(V) if self.ln_v is not None else V
        return store_kv(self.k_proj(Vn), self.kv_dtype), store_kv(self.v_proj(Vn), self.kv_dtype)

    def forward(self, xhat: torch.Tensor, K: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        B, T, _ = xhat.shape
        Nv, r = K.shape[1], K.shape[2]
        hc, dc = self.heads, r // self.heads
        q = self.q_proj(xhat).view(B, T, hc, dc).transpose(1, 2)  # [B, hc, T, dc]
        k = K.view(B, Nv, hc, dc).transpose(1, 2)
        u = U.view(B, Nv, hc, dc).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dc), dim=-1) @ u  # no mask
        return self.o_proj(a.transpose(1, 2).reshape(B, T, r))


class LaviModule(nn.Module):
    """Container giving the `lavi.` prefix: projector, frame_embedding, conditioners.{layer}.{norm} (or, with
    conditioner_per_layer, conditioners.{layer} for the decoder layers and conditioners.final.norm)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.text_config.hidden_size
        self.projector = Projector(cfg.vision_config.hidden_size, d)
        vc = cfg.video_config
        self.frame_embedding = nn.Embedding(vc.max_frames, d) if vc.frame_embedding else None
        self.conditioners = nn.ModuleDict()
        self.site_parts: Dict[Tuple[str, str], Tuple[Tuple[str, ...], int, int]] = {}  # site -> (module path, part, n)
        per_layer = cfg.lavi_config.conditioner_per_layer
        sites = cfg.conditioner_sites()
        for layer, norm in sites:
            if per_layer and layer != 'final':
                layer_sites = [s for s in sites if s[0] == layer]
                if layer not in self.conditioners:
                    self.conditioners[layer] = Conditioner(d, cfg.lavi_config, len(layer_sites))
                self.site_parts[(layer, norm)] = ((layer,), layer_sites.index((layer, norm)), len(layer_sites))
                continue
            if layer not in self.conditioners:
                self.conditioners[layer] = nn.ModuleDict()
            self.conditioners[layer][norm] = Conditioner(d, cfg.lavi_config)
            self.site_parts[(layer, norm)] = ((layer, norm), 0, 1)
        share = cfg.lavi_config.shared_visual_kv and len(self.conditioners) > 0
        self.shared_kv = VisualKV(d, cfg.lavi_config) if share else None

    def all_conditioners(self) -> List[Conditioner]:
        return [m for m in self.conditioners.modules() if isinstance(m, Conditioner)]

    def conditioner(self, layer: str, norm: str) -> Optional[Conditioner]:
        return self.site(layer, norm)[0]

    def site(self, layer: str, norm: str) -> Tuple[Optional[Conditioner], int, int]:
        """The conditioner of a ViLN site, the site's index among those it serves, and their number."""
        if (layer, norm) not in self.site_parts:
            return None, 0, 1
        path, part, n = self.site_parts[(layer, norm)]
        c = self.conditioners[path[0]]
        return (c[path[1]] if len(path) > 1 else c), part, n


# =============================================================================================================
# Qwen2 decoder, names model.*, lm_head.weight
# =============================================================================================================


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps


class Qwen2Attention(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        d, H, Hkv, dh = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.H, self.Hkv, self.dh = H, Hkv, dh
        self.q_proj = nn.Linear(d, H * dh, bias=c.attention_bias)
        self.k_proj = nn.Linear(d, Hkv * dh, bias=c.attention_bias)
        self.v_proj = nn.Linear(d, Hkv * dh, bias=c.attention_bias)
        self.o_proj = nn.Linear(H * dh, d, bias=False)

    def forward(self, x, cos, sin, allowed):
        """x [B, L, d]; allowed bool [B, 1, L, L] (query, key)."""
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.H, self.dh).transpose(1, 2)
        k = self.k_proj(x).view(B, L, self.Hkv, self.dh).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.Hkv, self.dh).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = self.H // self.Hkv  # query head h reads kv head h // rep
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.dh)
        s = s.masked_fill(~allowed, torch.finfo(s.dtype).min)
        o = torch.softmax(s, dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, L, self.H * self.dh))


class Qwen2MLP(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen2DecoderLayer(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.self_attn = Qwen2Attention(c)
        self.mlp = Qwen2MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Qwen2Model(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Qwen2DecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


# =============================================================================================================
# The whole model
# =============================================================================================================


class LaviForConditionalGeneration(nn.Module):
    """vision_model + lavi (projector, conditioners) + Qwen2 decoder. Mode from cfg.lavi_config.mode."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.vision_model = VisionModel(cfg.vision_config)
        self.lavi = LaviModule(cfg)
        self.model = Qwen2Model(cfg.text_config)
        self.lm_head = None if cfg.text_config.tie_word_embeddings else \
            nn.Linear(cfg.text_config.hidden_size, cfg.text_config.vocab_size, bias=False)

    @property
    def mode(self) -> str:
        return self.config.lavi_config.mode

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    # ---------------------------------------------------------------- initialisation / training helpers
    def init_weights(self, std: float = 0.02, zero_o_proj: bool = True) -> None:
        """HF-style init (normal(std) for Linear/Embedding/Conv, zero biases, unit norms); conditioner o_proj
        zeroed by default so that an untrained LaVi equals its base LLM (spec)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
                if getattr(m, 'bias', None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm,)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)
        for conv in self.vision_model.embeddings.stem:  # fan-in scaled, so the stem's signal survives its depth
            nn.init.normal_(conv.weight, 0.0, (conv.weight[0].numel()) ** -0.5)
        if zero_o_proj:
            self.zero_conditioner_outputs()

    @torch.no_grad()
    def zero_conditioner_outputs(self) -> None:
        for c in self.lavi.all_conditioners():
            c.o_proj.weight.zero_()
            c.o_proj.bias.zero_()

    def set_trainable(self, vision: bool = False, projector: bool = True, conditioners: bool = True,
                      llm: bool = False, frame_embedding: bool = True) -> List[nn.Parameter]:
        """Freezes/unfreezes parts; returns the trainable parameters."""
        groups = [(self.vision_model, vision), (self.lavi.projector, projector), (self.lavi.conditioners, conditioners),
                  (self.model, llm)]
        if self.lm_head is not None:
            groups.append((self.lm_head, llm))
        if self.lavi.frame_embedding is not None:
            groups.append((self.lavi.frame_embedding, frame_embedding))
        if self.lavi.shared_kv is not None:
            groups.append((self.lavi.shared_kv, conditioners))
        for mod, on in groups:
            for p in mod.parameters():
                p.requires_grad_(on)
        return [p for p in self.parameters() if p.requires_grad]

    # ---------------------------------------------------------------- vision side
    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> V [B, N_v, d]."""
        return self.lavi.projector(self.vision_features(pixel_values))

    def pool_frames(self, frames_V: torch.Tensor) -> torch.Tensor:
        """[B, F, N, d] projected frames -> [B, F * n', d]: bilinear resize of each g x g grid to
        ceil(g/pool)^2 (align_corners=False, no antialias), + frame_embedding[f], frames concatenated."""
        B, Fr, N, d = frames_V.shape
        g = self.config.vision_config.grid
        pool = self.config.video_config.pool
        go = -(-g // pool)
        x = frames_V.reshape(B * Fr, g, g, d).permute(0, 3, 1, 2)
        if go != g:
            x = F.interpolate(x, size=(go, go), mode='bilinear', align_corners=False)
        x = x.permute(0, 2, 3, 1).reshape(B, Fr, go * go, d)
        if self.lavi.frame_embedding is not None:
            x = x + self.lavi.frame_embedding.weight[:Fr][None, :, None, :]
        return x.reshape(B, Fr * go * go, d)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """[F, 3, S, S] or [B, F, 3, S, S] normalised frames -> V [B, F * n', d]."""
        if frames.dim() == 4:
            frames = frames[None]
        B, Fr = frames.shape[:2]
        if Fr > self.config.video_config.max_frames:
            raise ValueError(f'{Fr} frames > max_frames')
        Vf = self.encode_image(frames.flatten(0, 1))
        return self.pool_frames(Vf.view(B, Fr, Vf.shape[1], Vf.shape[2]))

    def prepare_conditioners(self, V: torch.Tensor) -> Dict[Tuple[str, str], Tuple[torch.Tensor, torch.Tensor]]:
        """Every conditioner's (K, U), computed once per image (or video)."""
        out, own = {}, {}
        shared = self.lavi.shared_kv.prepare(V) if self.lavi.shared_kv is not None else None
        for site in self.lavi.site_parts:
            c = self.lavi.conditioner(*site)
            if shared is None and id(c) not in own:
                own[id(c)] = c.prepare(V)
            out[site] = shared if shared is not None else own[id(c)]
        return out

    # ---------------------------------------------------------------- ViLN
    def _norm(self, norm: RMSNorm, site: Tuple[str, str], x, cond_kv, has_image, deltas, pending=None):
        """pending: a dict per forward pass, holding a per-layer conditioner's output from the layer's first
        modulated norm (whose input it reads) for the layer's later ones."""
        xhat = rms_normalize(x, norm.eps)
        c, part, n = self.lavi.site(*site) if cond_kv is not None else (None, 0, 1)
        if c is None:
            return norm.weight * xhat
        K, U = cond_kv[site]
        if n == 1:
            delta = c(xhat, K, U)
        else:
            if part == 0:
                pending[site[0]] = c(xhat, K, U)
            md = pending[site[0]].shape[-1] // n
            delta = pending[site[0]][..., part * md:(part + 1) * md]
        if has_image is not None:
            delta = delta * has_image.to(delta.dtype)[:, None, None]
        if deltas is not None:
            deltas[f'{site[0]}.{site[1]}'] = delta
        d = x.shape[-1]
        mod = self.config.lavi_config.modulate
        if mod == 'both':
            return (norm.weight + delta[..., :d]) * xhat + delta[..., d:]
        if mod == 'scale':
            return (norm.weight + delta) * xhat
        return norm.weight * xhat + delta

    # ---------------------------------------------------------------- forward
    def forward(self, input_ids: torch.Tensor, pixel_values: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                visual_tokens: Optional[torch.Tensor] = None, cond_kv=None, has_image: Optional[torch.Tensor] = None,
                output_hidden_states: bool = False, output_deltas: bool = False) -> dict:
        """
        input_ids [B, T]; pixel_values [B, 3, S, S] or visual_tokens [B, N_v, d] (precomputed V, e.g. video) or
        neither (text only: exactly the base LLM); attention_mask [B, T] (1 = token, 0 = padding, any side);
        labels [B, T] (-100 = ignored) -> loss = mean next-token cross-entropy over text positions.
        has_image [B] (LaVi only): 0 drops that sample's deltas (text-only sample inside an image batch).
        Returns dict: logits [B, L, vocab] (L = N_v + T in concat mode with an image, else T), text_logits
        [B, T, vocab], loss, visual_tokens, hidden_states (HF convention: L_dec + 1 entries, [0] = embeddings,
        [i] = output of layer i-1, last = after the final norm), last_layer_output (before the final norm),
        deltas {'{layer}.{norm}': delta [B, T, m*d]}.
        """
        B, T = input_ids.shape
        V = visual_tokens
        if V is None and pixel_values is not None:
            V = self.encode_image(pixel_values)
        h = self.model.embed_tokens(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long, device=input_ids.device)
        attention_mask = attention_mask.to(torch.long)
        n_prefix = 0
        if self.mode == 'concat':
            if V is not None:
                n_prefix = V.shape[1]
                h = torch.cat([V.to(h.dtype), h], dim=1)
                attention_mask = torch.cat([torch.ones(B, n_prefix, dtype=torch.long, device=h.device), attention_mask], 1)
            cond_kv = None
        else:
            if cond_kv is None and V is not None and len(self.lavi.conditioners) > 0:
                cond_kv = self.prepare_conditioners(V.to(h.dtype))
        L = h.shape[1]
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # positions run over real tokens only
        tc = self.config.text_config
        cos, sin = rope_cos_sin(positions, tc.head_dim, tc.rope_theta, h.dtype)
        causal = torch.ones(L, L, dtype=torch.bool, device=h.device).tril()
        allowed = (causal[None] & attention_mask.bool()[:, None, :])[:, None]  # [B, 1, L, L]

        hidden_states = [h] if output_hidden_states else None
        deltas = {} if output_deltas else None
        pending = {}
        for i, layer in enumerate(self.model.layers):
            n = self._norm(layer.input_layernorm, (str(i), 'input_layernorm'), h, cond_kv, has_image, deltas, pending)
            h = h + layer.self_attn(n, cos, sin, allowed)
            n = self._norm(layer.post_attention_layernorm, (str(i), 'post_attention_layernorm'), h, cond_kv,
                           has_image, deltas, pending)
            h = h + layer.mlp(n)
            if output_hidden_states and i < len(self.model.layers) - 1:
                hidden_states.append(h)
        last = h
        h = self._norm(self.model.norm, ('final', 'norm'), h, cond_kv, has_image, deltas)
        if output_hidden_states:
            hidden_states.append(h)
        logits = self.lm_head(h) if self.lm_head is not None else h @ self.model.embed_tokens.weight.t()
        text_logits = logits[:, n_prefix:]
        loss = None
        if labels is not None:
            lab = labels.masked_fill(attention_mask[:, n_prefix:] == 0, -100)
            loss = F.cross_entropy(text_logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   lab[:, 1:].reshape(-1), ignore_index=-100)
        return {'logits': logits, 'text_logits': text_logits, 'loss': loss, 'visual_tokens': V,
                'hidden_states': hidden_states, 'last_layer_output': last, 'deltas': deltas, 'n_prefix': n_prefix}

    @torch.no_grad()
    def generate_greedy(self, input_ids: torch.Tensor, pixel_values: Optional[torch.Tensor] = None,
                        visual_tokens: Optional[torch.Tensor] = None, max_new_tokens: int = 20,
                        stop_at_eos: bool = False) -> Tuple[List[int], List[float]]:
        """Greedy continuation of one prompt (batch 1). No KV cache: the whole sequence is recomputed each step;
        the image is encoded once and (LaVi) every conditioner's K, U computed once. Returns (tokens, margins),
        margins = top1 - top2 logit at each step."""
        assert input_ids.shape[0] == 1
        V = visual_tokens
        if V is None and pixel_values is not None:
            V = self.encode_image(pixel_values)
        cond_kv = self.prepare_conditioners(V) if (V is not None and self.mode == 'lavi') else None
        ids = input_ids
        toks, margins = [], []
        for _ in range(max_new_tokens):
            out = self.forward(ids, visual_tokens=V, cond_kv=cond_kv)
            last = out['text_logits'][0, -1]
            top = torch.topk(last, 2)
            nxt = int(torch.argmax(last))
            toks.append(nxt)
            margins.append(float(top.values[0] - top.values[1]))
            ids = torch.cat([ids, torch.tensor([[nxt]], dtype=ids.dtype)], dim=1)
            if stop_at_eos and nxt in self.config.eos_token_ids:
                break
        return toks, margins

    # ---------------------------------------------------------------- checkpoints
    def checkpoint_tensors(self, dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
        """state_dict under the contract's names (tied lm_head omitted)."""
        return {k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items()}

    def load_checkpoint_tensors(self, tensors: Dict[str, torch.Tensor], strict: bool = True) -> None:
        """Loads contract-named tensors (any float dtype; cast to the model's). Drops what a real HF checkpoint
        may carry but this config does not run: lm_head.weight when tied, vision layers >= num_hidden_layers,
        vision_model.post_layernorm.* when unused."""
        own = self.state_dict()
        nv = self.config.vision_config.num_hidden_layers
        sd, extra = {}, []
        for k, v in tensors.items():
            if k in own:
                sd[k] = v.to(own[k].dtype)
                continue
            skip = (k == 'lm_head.weight' and self.lm_head is None) or k.startswith('vision_model.post_layernorm.')
            if k.startswith('vision_model.encoder.layers.'):
                skip = skip or int(k.split('.')[3]) >= nv
            if not skip:
                extra.append(k)
        missing = [k for k in own if k not in sd]
        if strict and (missing or extra):
            raise KeyError(f'checkpoint mismatch: missing {missing[:8]} unexpected {extra[:8]}')
        self.load_state_dict(sd, strict=False)

    def save_pretrained(self, directory: str, dtype: torch.dtype = torch.float32,
                        metadata: Optional[Dict[str, str]] = None) -> None:
        os.makedirs(directory, exist_ok=True)
        cfg = copy.deepcopy(self.config)
        cfg.torch_dtype = {torch.float32: 'float32', torch.float16: 'float16', torch.bfloat16: 'bfloat16'}[dtype]
        cfg.save(os.path.join(directory, 'config.json'))
        save_safetensors(os.path.join(directory, 'model.safetensors'), self.checkpoint_tensors(dtype),
                         {'format': 'pt', **(metadata or {})})

    @staticmethod
    def from_pretrained(directory: str, dtype: torch.dtype = torch.float32) -> 'LaviForConditionalGeneration':
        cfg = ModelConfig.load(os.path.join(directory, 'config.json'))
        m = LaviForConditionalGeneration(cfg).to(dtype)
        m.load_checkpoint_tensors(load_safetensors(os.path.join(directory, 'model.safetensors')))
        return m


# =============================================================================================================
# Preprocessing
# =============================================================================================================


def preprocess_rgb8(img: torch.Tensor, vc: VisionConfig, dtype=torch.float64) -> torch.Tensor:
    """uint8 [S, S, 3] at native size -> [1, 3, S, S]: /255, then (x - mean) / std per channel."""
    if img.shape[0] != vc.image_size or img.shape[1] != vc.image_size:
        raise ValueError('preprocess_rgb8 handles native-size images only (no resize)')
    x = img.to(dtype) / 255.0
    mean = torch.tensor(vc.image_mean, dtype=dtype)
    std = torch.tensor(vc.image_std, dtype=dtype)
    return ((x - mean) / std).permute(2, 0, 1)[None].contiguous()


# =============================================================================================================
# safetensors
# =============================================================================================================

_ST_DTYPES = {
    'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
    'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8,
    'BOOL': torch.bool,
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}


def _to_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes a safetensors file: u64 LE header length, JSON header padded with spaces to a multiple of 8,
    then the raw little-endian data. Tensors are laid out by descending element size, then name, so that every
    tensor starts at an offset aligned to its element size."""
    assert sys.byteorder == 'little'
    names = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header: Dict[str, object] = {}
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for n in names:
        t = tensors[n]
        if t.dtype not in _ST_NAMES:
            raise TypeError(f'{n}: dtype {t.dtype} not writable')
        b = _to_bytes(t)
        header[n] = {'dtype': _ST_NAMES[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hj += b' ' * ((-len(hj)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def _read_header(path: str):
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    return raw, 8 + n, header


def load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Reads every tensor of a safetensors file (dtypes kept, BF16 included)."""
    raw, base, header = _read_header(path)
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        dt = _ST_DTYPES[e['dtype']]
        b, en = e['data_offsets']
        buf = raw[base + b: base + en]
        if dt == torch.bfloat16:
            t = torch.from_numpy(np.frombuffer(buf, dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            npdt = torch.empty(0, dtype=dt).numpy().dtype
            t = torch.from_numpy(np.frombuffer(buf, dtype=npdt).copy())
        out[name] = t.reshape(e['shape'])
    return out


def safetensors_metadata(path: str) -> Dict[str, str]:
    return _read_header(path)[2].get('__metadata__', {})
