"""Float64 PyTorch reference (oracle) for three Hugging Face model families, written from the semantics of the
transformers source (see test/hf/README.md for the functions read):

  * Qwen2ForCausalLM                      -> Qwen2
  * SiglipVisionModel                     -> siglip_vision, siglip_preprocess
  * LlavaOnevisionForConditionalGeneration (one image) -> LlavaOnevision, llava_preprocess

plus a small safetensors reader/writer (no `safetensors` package here) and HF-style greedy generation.

Everything runs in float64 on the weights exactly as stored (bf16/f16 values widened to float64), so the goldens
are the "exact math" of the stored checkpoint; HF itself would run in the checkpoint dtype or float32.

Run with Debian's PyTorch: /usr/bin/python3.
"""

import json
import math
import os
import struct

import numpy as np
import torch
from PIL import Image

torch.set_default_dtype(torch.float64)
F = torch.nn.functional

# ----------------------------------------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------------------------------------

_NP_OF = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8}
_SIZE_OF = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}


def f32_to_bf16_bits(a):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even (finite inputs only)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    assert np.all(np.isfinite(a))
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_f32(u16):
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def quantize(a, dtype):
    """Round a float array to what a checkpoint of `dtype` (F32/F16/BF16/F64) stores; returns (stored numpy array
    in the storage representation, float64 values it decodes to)."""
    a32 = np.asarray(a, dtype=np.float32)
    if dtype == "F64":
        a64 = np.asarray(a, dtype=np.float64)
        return a64, a64.copy()
    if dtype == "F32":
        return a32, a32.astype(np.float64)
    if dtype == "F16":
        h = a32.astype(np.float16)
        assert np.all(np.isfinite(h))
        return h, h.astype(np.float64)
    if dtype == "BF16":
        b = f32_to_bf16_bits(a32)
        return b, bf16_bits_to_f32(b).astype(np.float64)
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> (dtype string, numpy array already in storage representation; BF16 as uint16 bits).
    Data is laid out in name order; the header is padded with spaces to a multiple of 8 bytes, as the
    reference writer does."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs = []
    offset = 0
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        arr = np.ascontiguousarray(arr)
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        assert len(raw) == _SIZE_OF[dtype] * int(np.prod(arr.shape, dtype=np.int64)), name
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return offset


def read_safetensors(path):
    """Own reader: returns (dict name -> float64/int numpy array, dict name -> dtype string, metadata).
    Checks that the offsets tile the data region exactly."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    meta = header.pop("__metadata__", None)
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    pos = 0
    for b, e, k in spans:
        assert b == pos, f"{path}: hole/overlap at {k}"
        pos = e
    assert pos == len(data), f"{path}: data length {len(data)} != covered {pos}"
    out, dtypes = {}, {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        dt, shape = v["dtype"], v["shape"]
        assert e - b == _SIZE_OF[dt] * int(np.prod(shape, dtype=np.int64)), k
        raw = data[b:e]
        if dt == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2")).reshape(shape)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_NP_OF[dt]).newbyteorder("<")).reshape(shape)
        out[k] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr.copy()
        dtypes[k] = dt
    return out, dtypes, meta


def load_checkpoint(folder):
    """Loads a HF model folder's weights (single model.safetensors or sharded via model.safetensors.index.json)
    into a dict name -> float64 torch tensor."""
    idx = os.path.join(folder, "model.safetensors.index.json")
    files = []
    if os.path.exists(idx):
        with open(idx) as f:
            index = json.load(f)
        files = sorted(set(index["weight_map"].values()))
    else:
        files = ["model.safetensors"]
        index = None
    W = {}
    for fn in files:
        arrs, _, _ = read_safetensors(os.path.join(folder, fn))
        for k, v in arrs.items():
            if index is not None:
                assert index["weight_map"][k] == fn, k
            W[k] = torch.from_numpy(np.array(v))
    if index is not None:
        assert set(index["weight_map"]) == set(W)
    return W


def load_json(path):
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------------------------------
# small building blocks (float64)
# ----------------------------------------------------------------------------------------------------------------

def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    # ACT2FN["gelu_pytorch_tanh"]
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    # ACT2FN["gelu"] (exact)
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def silu(x):
    return x * torch.sigmoid(x)


ACT = {"silu": silu, "gelu": gelu_erf, "gelu_pytorch_tanh": gelu_tanh}


def softmax(x):
    m = x.max(-1, keepdim=True).values
    e = torch.exp(x - m)
    return e / e.sum(-1, keepdim=True)


# ----------------------------------------------------------------------------------------------------------------
# Qwen2
# ----------------------------------------------------------------------------------------------------------------

class Qwen2:
    """Qwen2ForCausalLM in float64. `prefix` is where the decoder's weights live ("model." for Qwen2ForCausalLM,
    "language_model.model." / "model.language_model." inside LLaVA-OneVision); `head` is the lm_head tensor name
    (ignored when the config ties the head to embed_tokens)."""

    def __init__(self, cfg, W, prefix="model.", head="lm_head.weight"):
        self.cfg = cfg
        self.W = W
        self.p = prefix
        self.H = cfg["hidden_size"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads") or self.nh
        self.hd = cfg.get("head_dim") or self.H // self.nh
        self.L = cfg["num_hidden_layers"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.theta = cfg.get("rope_theta", 10000.0)
        self.act = ACT[cfg.get("hidden_act", "silu")]
        assert not cfg.get("use_sliding_window", False)
        assert cfg.get("rope_scaling") in (None, {}), "only default rope"
        tie = cfg.get("tie_word_embeddings", False)  # Qwen2Config default: False
        self.embed = W[prefix + "embed_tokens.weight"]
        self.lm_head = self.embed if tie else W[head]
        if tie:
            assert head not in W, "tied config but an lm_head tensor is present"

    def embed_ids(self, ids):
        return self.embed[torch.as_tensor(ids, dtype=torch.long)]

    def rope(self, T):
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.float64) / self.hd))
        freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)  # [T, hd]
        return emb.cos(), emb.sin()

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], dim=-1)

    def forward_embeds(self, x):
        """x: [T, H] input embeddings -> logits [T, V] (causal, positions 0..T-1)."""
        W, p = self.W, self.p
        T = x.shape[0]
        cos, sin = self.rope(T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        g = self.nh // self.nkv
        for i in range(self.L):
            q_ = f"{p}layers.{i}."
            h = rms_norm(x, W[q_ + "input_layernorm.weight"], self.eps)
            q = linear(h, W[q_ + "self_attn.q_proj.weight"], W[q_ + "self_attn.q_proj.bias"])
            k = linear(h, W[q_ + "self_attn.k_proj.weight"], W[q_ + "self_attn.k_proj.bias"])
            v = linear(h, W[q_ + "self_attn.v_proj.weight"], W[q_ + "self_attn.v_proj.bias"])
            q = q.view(T, self.nh, self.hd).transpose(0, 1)   # [nh, T, hd]
            k = k.view(T, self.nkv, self.hd).transpose(0, 1)  # [nkv, T, hd]
            v = v.view(T, self.nkv, self.hd).transpose(0, 1)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            # query head j uses kv head j // g (repeat_kv)
            k = k.repeat_interleave(g, dim=0)
            v = v.repeat_interleave(g, dim=0)
            att = softmax(q @ k.transpose(1, 2) * (self.hd ** -0.5) + mask)
            o = (att @ v).transpose(0, 1).reshape(T, self.nh * self.hd)
            x = x + linear(o, W[q_ + "self_attn.o_proj.weight"])
            h = rms_norm(x, W[q_ + "post_attention_layernorm.weight"], self.eps)
            m = self.act(linear(h, W[q_ + "mlp.gate_proj.weight"])) * linear(h, W[q_ + "mlp.up_proj.weight"])
            x = x + linear(m, W[q_ + "mlp.down_proj.weight"])
        x = rms_norm(x, W[p + "norm.weight"], self.eps)
        return linear(x, self.lm_head)

    def logits(self, ids):
        return self.forward_embeds(self.embed_ids(ids))


def greedy_generate(logits_of, prompt_ids, max_new_tokens, eos_ids):
    """HF-style greedy search: argmax of the last position's logits, append, stop right after emitting any id in
    eos_ids (that eos id is part of the output). Returns (new ids, top-2 margins per step, prompt logits [T, V]).
    `logits_of(ids)` returns logits [len(ids), V] for the full sequence (recomputed each step; no cache)."""
    ids = list(prompt_ids)
    new, margins = [], []
    prompt_logits = None
    for step in range(max_new_tokens):
        lg = logits_of(ids)
        if step == 0:
            prompt_logits = lg
        last = lg[-1]
        top = torch.topk(last, 2)
        margins.append(float(top.values[0] - top.values[1]))
        tok = int(torch.argmax(last))
        assert tok == int(top.indices[0])
        new.append(tok)
        ids.append(tok)
        if tok in eos_ids:
            break
    return new, margins, prompt_logits


# ----------------------------------------------------------------------------------------------------------------
# SigLIP vision
# ----------------------------------------------------------------------------------------------------------------

def siglip_vision(cfg, W, pixel_values, prefix="vision_model.", use_head=None):
    """SiglipVisionModel.forward in float64. pixel_values [N, C, S, S] -> dict with
    hidden_states (list of L+1 tensors [N, P, H]: embeddings, then each encoder layer's output),
    last_hidden_state (post_layernorm of the last), pooler_output ([N, H] or None)."""
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    ps = cfg["patch_size"]
    S = cfg["image_size"]
    L = cfg["num_hidden_layers"]
    eps = cfg.get("layer_norm_eps", 1e-6)
    act = ACT[cfg.get("hidden_act", "gelu_pytorch_tanh")]
    if use_head is None:
        use_head = cfg.get("vision_use_head", True)
    x = torch.as_tensor(pixel_values, dtype=torch.float64)
    N, C, Hh, Ww = x.shape
    assert Hh == S and Ww == S
    g = S // ps  # Conv2d(kernel=stride=patch, padding="valid"): trailing S % ps rows/cols are never seen
    x = x[:, :, :g * ps, :g * ps]
    patches = x.reshape(N, C, g, ps, g, ps).permute(0, 2, 4, 1, 3, 5).reshape(N, g * g, C * ps * ps)
    wconv = W[prefix + "embeddings.patch_embedding.weight"]  # [H, C, ps, ps]
    h = patches @ wconv.reshape(H, -1).T + W[prefix + "embeddings.patch_embedding.bias"]
    h = h + W[prefix + "embeddings.position_embedding.weight"][: g * g][None]
    hidden_states = [h]
    for i in range(L):
        q_ = f"{prefix}encoder.layers.{i}."
        r = h
        t = layer_norm(h, W[q_ + "layer_norm1.weight"], W[q_ + "layer_norm1.bias"], eps)
        q = linear(t, W[q_ + "self_attn.q_proj.weight"], W[q_ + "self_attn.q_proj.bias"])
        k = linear(t, W[q_ + "self_attn.k_proj.weight"], W[q_ + "self_attn.k_proj.bias"])
        v = linear(t, W[q_ + "self_attn.v_proj.weight"], W[q_ + "self_attn.v_proj.bias"])
        P = t.shape[1]
        q = q.view(N, P, nh, hd).transpose(1, 2)
        k = k.view(N, P, nh, hd).transpose(1, 2)
        v = v.view(N, P, nh, hd).transpose(1, 2)
        att = softmax(q @ k.transpose(-1, -2) * hd ** -0.5)
        o = (att @ v).transpose(1, 2).reshape(N, P, H)
        h = r + linear(o, W[q_ + "self_attn.out_proj.weight"], W[q_ + "self_attn.out_proj.bias"])
        r = h
        t = layer_norm(h, W[q_ + "layer_norm2.weight"], W[q_ + "layer_norm2.bias"], eps)
        t = linear(act(linear(t, W[q_ + "mlp.fc1.weight"], W[q_ + "mlp.fc1.bias"])),
                   W[q_ + "mlp.fc2.weight"], W[q_ + "mlp.fc2.bias"])
        h = r + t
        hidden_states.append(h)
    last = layer_norm(h, W[prefix + "post_layernorm.weight"], W[prefix + "post_layernorm.bias"], eps)
    pooled = None
    if use_head:
        hp = prefix + "head."
        probe = W[hp + "probe"].expand(N, 1, H)                # [N, 1, H]
        win, bin_ = W[hp + "attention.in_proj_weight"], W[hp + "attention.in_proj_bias"]
        q = linear(probe, win[:H], bin_[:H])
        k = linear(last, win[H:2 * H], bin_[H:2 * H])
        v = linear(last, win[2 * H:], bin_[2 * H:])
        P = last.shape[1]
        q = q.view(N, 1, nh, hd).transpose(1, 2)
        k = k.view(N, P, nh, hd).transpose(1, 2)
        v = v.view(N, P, nh, hd).transpose(1, 2)
        att = softmax(q @ k.transpose(-1, -2) / math.sqrt(hd))
        o = (att @ v).transpose(1, 2).reshape(N, 1, H)
        o = linear(o, W[hp + "attention.out_proj.weight"], W[hp + "attention.out_proj.bias"])
        r = o
        t = layer_norm(o, W[hp + "layernorm.weight"], W[hp + "layernorm.bias"], eps)
        t = linear(act(linear(t, W[hp + "mlp.fc1.weight"], W[hp + "mlp.fc1.bias"])),
                   W[hp + "mlp.fc2.weight"], W[hp + "mlp.fc2.bias"])
        pooled = (r + t)[:, 0]
    return {"hidden_states": hidden_states, "last_hidden_state": last, "pooler_output": pooled}


# ----------------------------------------------------------------------------------------------------------------
# image processors (slow / PIL path)
# ----------------------------------------------------------------------------------------------------------------

def _rescale_normalize(arr_u8_chw, pp):
    x = arr_u8_chw.astype(np.float64)
    if pp.get("do_rescale", True):
        x = x * pp.get("rescale_factor", 1 / 255)
    if pp.get("do_normalize", True):
        mean = np.asarray(pp["image_mean"], dtype=np.float64)[:, None, None]
        std = np.asarray(pp["image_std"], dtype=np.float64)[:, None, None]
        x = (x - mean) / std
    return x


def _to_rgb(img, pp):
    if pp.get("do_convert_rgb", True) and img.mode != "RGB":
        img = img.convert("RGB")
    assert img.mode == "RGB"
    return img


def _pil_resize(img, w, h, resample):
    # HF image_transforms.resize on a uint8 array round-trips through PIL.Image.resize((w, h), resample)
    return img.resize((w, h), resample=resample)


def siglip_preprocess(img, pp):
    """SiglipImageProcessor: resize to (size.height, size.width) with PIL `resample`, rescale, normalise.
    Returns float64 [1, 3, H, W]."""
    img = _to_rgb(img, pp)
    h, w = pp["size"]["height"], pp["size"]["width"]
    r = _pil_resize(img, w, h, pp.get("resample", 3))
    arr = np.asarray(r, dtype=np.uint8).transpose(2, 0, 1)
    return _rescale_normalize(arr, pp)[None]


def select_best_resolution(original_size, possible_resolutions):
    """image_processing_utils.select_best_resolution: original_size (height, width); candidates (height, width).
    Maximise the effective (downscaled, capped at the original) area, then minimise the wasted area; the first
    candidate wins ties."""
    oh, ow = original_size
    best, best_eff, best_waste = None, 0, float("inf")
    for ch, cw in possible_resolutions:
        scale = min(cw / ow, ch / oh)
        dw, dh = int(ow * scale), int(oh * scale)
        eff = min(dw * dh, ow * oh)
        waste = cw * ch - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (ch, cw), eff, waste
    return best


def patch_output_size(original_size, target):
    """image_processing_utils.get_patch_output_size: aspect-preserving size inside target (height, width)."""
    oh, ow = original_size
    th, tw = target
    sw, sh = tw / ow, th / oh
    if sw < sh:
        return min(math.ceil(oh * sw), th), tw
    return th, min(math.ceil(ow * sh), tw)


def llava_preprocess(img, pp):
    """LlavaOnevisionImageProcessor (slow path), single image with patching.
    Returns dict: pixel_values float64 [1 + tiles, 3, S, S] (base image first, then tiles row-major),
    image_size (height, width) of the RGB input, best_resolution (height, width), resized_size (height, width),
    padding ((top, bottom), (left, right))."""
    img = _to_rgb(img, pp)
    W0, H0 = img.size
    S = pp["size"]["height"]
    assert pp["size"]["width"] == S
    resample = pp.get("resample", 3)
    best = select_best_resolution((H0, W0), pp["image_grid_pinpoints"])
    nh, nw = patch_output_size((H0, W0), best)
    resized = np.asarray(_pil_resize(img, nw, nh, resample), dtype=np.uint8)  # [nh, nw, 3]
    # _get_padding_size: centred, the odd pixel goes to the bottom / right; constant 0 (uint8, before rescale)
    py, ry = divmod(best[0] - nh, 2)
    px, rx = divmod(best[1] - nw, 2)
    padded = np.zeros((best[0], best[1], 3), dtype=np.uint8)
    padded[py:py + nh, px:px + nw] = resized
    tiles = []
    for i in range(0, best[0], S):
        for j in range(0, best[1], S):
            tiles.append(padded[i:i + S, j:j + S])
    base = np.asarray(_pil_resize(img, S, S, resample), dtype=np.uint8)
    # _preprocess resizes every S x S patch to S x S again: PIL returns a copy for an unchanged size
    pv = np.stack([_rescale_normalize(t.transpose(2, 0, 1), pp) for t in [base] + tiles])
    return {"pixel_values": pv, "image_size": (H0, W0), "best_resolution": best, "resized_size": (nh, nw),
            "padding": ((py, py + ry), (px, px + rx))}


# ----------------------------------------------------------------------------------------------------------------
# LLaVA-OneVision
# ----------------------------------------------------------------------------------------------------------------

def unpad_grid(t, original_size):
    """modeling_llava_onevision.unpad_image on a [C, h, w] feature grid; original_size (height, width)."""
    oh, ow = original_size
    ch, cw = t.shape[1:]
    if ow / oh > cw / ch:
        new_h = int(round(oh * (cw / ow), 7))
        pad = (ch - new_h) // 2
        return t[:, pad:ch - pad, :]
    new_w = int(round(ow * (ch / oh), 7))
    pad = (cw - new_w) // 2
    return t[:, :, pad:cw - pad]


def anyres_max_target(ch, cw, max_num_patches, side):
    """The anyres_max_N rule of pack_image_features: ratio = sqrt(ch*cw / (N * side^2)); if ratio > 1.1 the grid is
    bilinearly resized to (int(ch // ratio), int(cw // ratio)) with PYTHON FLOAT FLOOR DIVISION (not floor(a / b)).
    Returns the target (h, w) or None."""
    ratio = math.sqrt(ch * cw / (max_num_patches * side ** 2))
    if ratio > 1.1:
        return int(ch // ratio), int(cw // ratio)
    return None


def bilinear_resize(t, out_h, out_w):
    """torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=False) on [C, h, w], written
    out: src = (dst + 0.5) * (in / out) - 0.5, clamped at 0; neighbours i0 = floor(src), i1 = min(i0 + 1, in - 1)."""
    C, ih, iw = t.shape

    def axis(n_in, n_out):
        scale = n_in / n_out
        src = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5
        src = src.clamp(min=0.0)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        lam = src - i0.double()
        return i0, i1, lam

    y0, y1, ly = axis(ih, out_h)
    x0, x1, lx = axis(iw, out_w)
    top = t[:, y0][:, :, x0] * (1 - lx) + t[:, y0][:, :, x1] * lx
    bot = t[:, y1][:, :, x0] * (1 - lx) + t[:, y1][:, :, x1] * lx
    return top * (1 - ly[:, None]) + bot * ly[:, None]


class LlavaOnevision:
    """LlavaOnevisionForConditionalGeneration for one image. naming: "old" (published llava-hf checkpoints) or
    "new" (transformers >= 4.52 save)."""

    def __init__(self, cfg, W, naming):
        self.cfg = cfg
        self.W = W
        self.vcfg = cfg["vision_config"]
        self.tcfg = cfg["text_config"]
        if naming == "old":
            self.vp, self.pp_ = "vision_tower.vision_model.", "multi_modal_projector."
            self.nl, lm_prefix, head = "image_newline", "language_model.model.", "language_model.lm_head.weight"
        elif naming == "new":
            self.vp, self.pp_ = "model.vision_tower.vision_model.", "model.multi_modal_projector."
            self.nl, lm_prefix, head = "model.image_newline", "model.language_model.", "lm_head.weight"
        else:
            raise ValueError(naming)
        self.lm = Qwen2(self.tcfg, W, prefix=lm_prefix, head=head)
        self.image_token = cfg.get("image_token_index", cfg.get("image_token_id"))

    def vision_features(self, pixel_values):
        """Selected vision hidden state per tile: [tiles+1, P, Hv]."""
        out = siglip_vision(self.vcfg, self.W, pixel_values, prefix=self.vp,
                            use_head=self.vcfg.get("vision_use_head", True))
        layer = self.cfg.get("vision_feature_layer", -1)
        assert isinstance(layer, int)
        feats = out["hidden_states"][layer]
        if self.cfg.get("vision_feature_select_strategy", "full") == "default":
            feats = feats[:, 1:]
        return feats

    def project(self, feats):
        p = self.pp_
        h = linear(feats, self.W[p + "linear_1.weight"], self.W.get(p + "linear_1.bias"))
        h = ACT[self.cfg.get("projector_hidden_act", "gelu")](h)
        return linear(h, self.W[p + "linear_2.weight"], self.W.get(p + "linear_2.bias"))

    def pack(self, proj, image_size, trace=None):
        """pack_image_features for one image: proj [tiles+1, side*side, D] -> [N, D]."""
        S = self.vcfg["image_size"]
        side = S // self.vcfg["patch_size"]
        base, tiles = proj[0], proj[1:]
        assert base.shape[0] == side * side
        bh, bw = select_best_resolution(image_size, self.cfg["image_grid_pinpoints"])
        nph, npw = bh // S, bw // S
        D = proj.shape[-1]
        g = tiles.reshape(nph, npw, side, side, D).permute(4, 0, 2, 1, 3).reshape(D, nph * side, npw * side)
        g = unpad_grid(g, image_size)
        ar = self.cfg.get("vision_aspect_ratio", "anyres_max_9")
        max_num = int(ar[len("anyres_max_"):]) if ar.startswith("anyres_max_") else None
        C_, ch, cw = g.shape
        if trace is not None:
            trace["grid"] = (nph, npw)
            trace["unpadded"] = (ch, cw)
        tgt = anyres_max_target(ch, cw, max_num, side) if max_num is not None else None
        if tgt is not None:
            g2 = bilinear_resize(g, *tgt)
            ref = F.interpolate(g[None], size=list(tgt), mode="bilinear", align_corners=False)[0]
            assert torch.allclose(g2, ref, rtol=0, atol=1e-12), "own bilinear != torch interpolate"
            g = g2
        if trace is not None:
            trace["final_grid"] = tuple(g.shape[1:])
            trace["downscaled"] = tgt is not None
        nl = self.W[self.nl]
        g = torch.cat([g, nl[:, None, None].expand(D, g.shape[1], 1)], dim=-1)
        g = g.reshape(D, -1).T
        return torch.cat([base, g], dim=0)

    def image_features(self, pixel_values, image_size, trace=None):
        feats = self.vision_features(pixel_values)
        proj = self.project(feats)
        return self.pack(proj, image_size, trace), feats

    def expand_prompt(self, ids, n_tokens):
        """The processor's expansion: the single image_token_index becomes n_tokens copies of itself."""
        assert ids.count(self.image_token) == 1
        i = ids.index(self.image_token)
        return ids[:i] + [self.image_token] * n_tokens + ids[i + 1:], i

    def embeds(self, ids, features):
        """Embeddings of `ids` (already expanded) with the placeholder rows replaced, in order, by `features`
        (masked_scatter). Tokens appended during generation never carry pixel features."""
        e = self.lm.embed_ids(ids).clone()
        pos = [i for i, t in enumerate(ids) if t == self.image_token]
        assert len(pos) >= features.shape[0]
        pos = pos[: features.shape[0]]
        e[pos] = features
        return e

    def logits(self, ids, features):
        return self.lm.forward_embeds(self.embeds(ids, features))


# ----------------------------------------------------------------------------------------------------------------
# LLaVA-OneVision token counting (processor side, no tensors)
# ----------------------------------------------------------------------------------------------------------------

def llava_num_image_tokens(height, width, crop, patch, pinpoints, max_num_patches=9, round_unpad=True):
    """processing_llava_onevision._get_number_of_features / _get_unpadded_features ("full" strategy, no CLS):
    base side^2 + unpadded (possibly anyres_max-downscaled) grid + one newline per grid row.
    round_unpad=False reproduces the processor before transformers PR #35779 (int() without round(., 7)).
    Returns dict with best_resolution, grid, unpadded, final grid, tokens."""
    bh, bw = select_best_resolution((height, width), pinpoints)
    side = crop // patch
    sh, sw = bh // crop, bw // crop
    ch, cw = side * sh, side * sw
    if width / height > cw / ch:
        nh = int(round(height * (cw / width), 7)) if round_unpad else int(height * (cw / width))
        ch -= ((ch - nh) // 2) * 2
    else:
        nw = int(round(width * (ch / height), 7)) if round_unpad else int(width * (ch / height))
        cw -= ((cw - nw) // 2) * 2
    unp = (ch, cw)
    tgt = anyres_max_target(ch, cw, max_num_patches, side)
    fh, fw = tgt if tgt is not None else (ch, cw)
    return {"best_resolution": [bh, bw], "grid": [sh, sw], "unpadded": list(unp), "final": [fh, fw],
            "downscaled": tgt is not None, "tokens": side * side + fh * fw + fh}
