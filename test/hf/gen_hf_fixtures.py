"""Writes the Hugging Face fixtures under test/fixtures/hf/: tiny random checkpoints in the exact Hub folder layouts,
test images, and float64 goldens computed by the oracle in hf_torch.py.

    /usr/bin/python3 test/hf/gen_hf_fixtures.py          # regenerate everything (deterministic, ~1 min on 2 cores)
    /usr/bin/python3 test/hf/check_hf_fixtures.py        # re-load the written files and re-check the goldens

See test/hf/README.md for what each file holds.
"""

import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_torch as hf  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hf"))
GOLD = os.path.join(ROOT, "goldens")
IMAGES = os.path.join(ROOT, "images")

# small-vocabulary stand-ins for Qwen2's special tokens (151643.. in the real vocabulary)
ENDOFTEXT, IM_START, IM_END, IMAGE, VIDEO = 505, 506, 507, 508, 509
VOCAB = 512
NL = 10  # an ordinary id playing "\n"

MIN_MARGIN = 0.02  # we require at least this top-2 logit gap at every greedy step (task floor: 1e-3)


def dump_json(path, obj, sort_keys=False):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=sort_keys)
        f.write("\n")


def dump_hub_json(path, obj):
    # transformers writes config.json, generation_config.json, preprocessor_config.json and the shard index with
    # indent=2 and sort_keys=True
    dump_json(path, obj, sort_keys=True)


# ----------------------------------------------------------------------------------------------------------------
# configs (field sets copied from the real models' config.json, dimensions shrunk)
# ----------------------------------------------------------------------------------------------------------------

def qwen2_instruct_config(H, nh, nkv, L, inter, tie, dtype, theta=1000000.0):
    # Qwen/Qwen2-0.5B-Instruct config.json field set
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": ENDOFTEXT,
        "eos_token_id": IM_END,
        "hidden_act": "silu",
        "hidden_size": H,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": 32768,
        "max_window_layers": L,
        "model_type": "qwen2",
        "num_attention_heads": nh,
        "num_hidden_layers": L,
        "num_key_value_heads": nkv,
        "rms_norm_eps": 1e-06,
        "rope_theta": theta,
        "sliding_window": 32768,
        "tie_word_embeddings": tie,
        "torch_dtype": dtype,
        "transformers_version": "4.40.1",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB,
    }


def qwen25_base_config(H, nh, nkv, L, inter, dtype):
    # Qwen/Qwen2.5-0.5B config.json field set (adds use_mrope; eos = <|endoftext|>; tied)
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": ENDOFTEXT,
        "eos_token_id": ENDOFTEXT,
        "hidden_act": "silu",
        "hidden_size": H,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": 32768,
        "max_window_layers": L,
        "model_type": "qwen2",
        "num_attention_heads": nh,
        "num_hidden_layers": L,
        "num_key_value_heads": nkv,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": dtype,
        "transformers_version": "4.40.1",
        "use_cache": True,
        "use_mrope": False,
        "use_sliding_window": False,
        "vocab_size": VOCAB,
    }


def siglip_vision_config():
    # a standalone SiglipVisionModel save (model_type siglip_vision_model); the so400m-patch14-384 vision_config
    # keys plus the defaults save_pretrained writes out
    return {
        "architectures": ["SiglipVisionModel"],
        "attention_dropout": 0.0,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 48,
        "image_size": 48,
        "intermediate_size": 176,
        "layer_norm_eps": 1e-06,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 4,
        "num_channels": 3,
        "num_hidden_layers": 2,
        "patch_size": 9,  # 48 // 9 = 5 -> 25 patches; like 384 // 14 = 27, the last 3 pixel rows/cols are unseen
        "torch_dtype": "float32",
        "transformers_version": "4.45.0",
    }


def siglip_preprocessor_config(S):
    # google/siglip-so400m-patch14-384 preprocessor_config.json field set
    return {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": S, "width": S},
    }


LLAVA_CROP, LLAVA_PATCH = 23, 5   # real: 384, 14 (27 features per tile side, 6 pixels unseen); here 4, 3 unseen
LLAVA_PINPOINTS = [[LLAVA_CROP * i, LLAVA_CROP * j] for i in range(1, 7) for j in range(1, 7)]
LLAVA_TEXT = dict(H=48, nh=4, nkv=2, L=2, inter=128)
LLAVA_VISION = dict(hidden_size=48, image_size=LLAVA_CROP, intermediate_size=128, num_attention_heads=4,
                    num_hidden_layers=3, patch_size=LLAVA_PATCH)


def llava_old_config():
    # llava-hf/llava-onevision-qwen2-0.5b-ov-hf config.json (transformers 4.45.0.dev0 save): sparse text/vision
    # configs (rms_norm_eps, hidden_act, layer_norm_eps take their defaults), tie through text_config
    t = LLAVA_TEXT
    return {
        "architectures": ["LlavaOnevisionForConditionalGeneration"],
        "ignore_index": -100,
        "image_grid_pinpoints": LLAVA_PINPOINTS,
        "image_token_index": IMAGE,
        "model_type": "llava_onevision",
        "projector_hidden_act": "gelu",
        "text_config": {
            "_name_or_path": "Qwen/Qwen2-0.5B-Instruct",
            "architectures": ["Qwen2ForCausalLM"],
            "bos_token_id": ENDOFTEXT,
            "eos_token_id": IM_END,
            "hidden_size": t["H"],
            "intermediate_size": t["inter"],
            "max_position_embeddings": 32768,
            "max_window_layers": t["L"],
            "model_type": "qwen2",
            "num_attention_heads": t["nh"],
            "num_hidden_layers": t["L"],
            "num_key_value_heads": t["nkv"],
            "rope_theta": 1000000.0,
            "sliding_window": None,
            "tie_word_embeddings": True,
            "torch_dtype": "bfloat16",
            "use_sliding_window": False,
            "vocab_size": VOCAB,
        },
        "torch_dtype": "float16",
        "transformers_version": "4.45.0.dev0",
        "use_image_newline_parameter": True,
        "video_token_index": VIDEO,
        "vision_aspect_ratio": "anyres_max_9",
        "vision_config": dict(LLAVA_VISION, model_type="siglip_vision_model", vision_use_head=False),
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
    }


def llava_new_config():
    # the same model class saved by a recent transformers (4.56): full sub-configs, "dtype", untied head
    t, v = LLAVA_TEXT, LLAVA_VISION
    return {
        "architectures": ["LlavaOnevisionForConditionalGeneration"],
        "dtype": "bfloat16",
        "ignore_index": -100,
        "image_grid_pinpoints": LLAVA_PINPOINTS,
        "image_token_index": IMAGE,
        "model_type": "llava_onevision",
        "multimodal_projector_bias": True,
        "projector_hidden_act": "gelu",
        "text_config": {
            "attention_dropout": 0.0,
            "bos_token_id": ENDOFTEXT,
            "dtype": "bfloat16",
            "eos_token_id": IM_END,
            "hidden_act": "silu",
            "hidden_size": t["H"],
            "initializer_range": 0.02,
            "intermediate_size": t["inter"],
            "layer_types": ["full_attention"] * t["L"],
            "max_position_embeddings": 32768,
            "max_window_layers": t["L"],
            "model_type": "qwen2",
            "num_attention_heads": t["nh"],
            "num_hidden_layers": t["L"],
            "num_key_value_heads": t["nkv"],
            "rms_norm_eps": 1e-06,
            "rope_scaling": None,
            "rope_theta": 1000000.0,
            "sliding_window": None,
            "tie_word_embeddings": False,
            "use_cache": True,
            "use_sliding_window": False,
            "vocab_size": VOCAB,
        },
        "tie_word_embeddings": False,
        "transformers_version": "4.56.1",
        "use_image_newline_parameter": True,
        "video_token_index": VIDEO,
        "vision_aspect_ratio": "anyres_max_9",
        "vision_config": {
            "attention_dropout": 0.0,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": v["hidden_size"],
            "image_size": v["image_size"],
            "intermediate_size": v["intermediate_size"],
            "layer_norm_eps": 1e-06,
            "model_type": "siglip_vision_model",
            "num_attention_heads": v["num_attention_heads"],
            "num_channels": 3,
            "num_hidden_layers": v["num_hidden_layers"],
            "patch_size": v["patch_size"],
            "vision_use_head": False,
        },
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
    }


def llava_preprocessor_config():
    # llava-hf/llava-onevision-qwen2-0.5b-ov-hf preprocessor_config.json field set
    return {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": True,
        "do_rescale": True,
        "do_resize": True,
        "image_grid_pinpoints": LLAVA_PINPOINTS,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "LlavaOnevisionImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "LlavaOnevisionProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": LLAVA_CROP, "width": LLAVA_CROP},
    }


# ----------------------------------------------------------------------------------------------------------------
# random weights (float64 draws; quantised to the checkpoint dtype; the oracle runs on the quantised values)
# ----------------------------------------------------------------------------------------------------------------

class Draw:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.W = {}

    def n(self, name, shape, std, mean=0.0):
        self.W[name] = mean + std * self.rng.standard_normal(shape)

    def lin(self, name, out, inp, bias=True, bias_std=0.1):
        self.n(name + ".weight", (out, inp), 1.0 / math.sqrt(inp))
        if bias:
            self.n(name + ".bias", (out,), bias_std)

    def norm(self, name, dim, bias):
        self.n(name + ".weight", (dim,), 0.1, mean=1.0)
        if bias:
            self.n(name + ".bias", (dim,), 0.1)


def draw_qwen2(d, cfg, prefix, head):
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = H // nh
    d.n(prefix + "embed_tokens.weight", (VOCAB, H), 0.5)
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}layers.{i}."
        d.norm(p + "input_layernorm", H, False)
        d.lin(p + "self_attn.q_proj", nh * hd, H, bias_std=0.3)
        d.lin(p + "self_attn.k_proj", nkv * hd, H, bias_std=0.3)
        d.lin(p + "self_attn.v_proj", nkv * hd, H, bias_std=0.3)
        d.lin(p + "self_attn.o_proj", H, nh * hd, bias=False)
        d.norm(p + "post_attention_layernorm", H, False)
        d.lin(p + "mlp.gate_proj", cfg["intermediate_size"], H, bias=False)
        d.lin(p + "mlp.up_proj", cfg["intermediate_size"], H, bias=False)
        d.lin(p + "mlp.down_proj", H, cfg["intermediate_size"], bias=False)
    # final norm weight with random signs: with a tied head the residual stream's own token embedding would
    # otherwise dominate h . e_t and greedy decoding of a random model just repeats its input token
    d.n(prefix + "norm.weight", (H,), 1.0)
    if not cfg.get("tie_word_embeddings", False):
        d.n(head, (VOCAB, H), 0.5)


def draw_siglip(d, cfg, prefix, with_head):
    H, I, ps = cfg["hidden_size"], cfg["intermediate_size"], cfg["patch_size"]
    P = (cfg["image_size"] // ps) ** 2
    d.n(prefix + "embeddings.patch_embedding.weight", (H, 3, ps, ps), 1.0 / math.sqrt(3 * ps * ps))
    d.n(prefix + "embeddings.patch_embedding.bias", (H,), 0.1)
    d.n(prefix + "embeddings.position_embedding.weight", (P, H), 0.5)
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}encoder.layers.{i}."
        d.norm(p + "layer_norm1", H, True)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            d.lin(p + "self_attn." + n, H, H)
        d.norm(p + "layer_norm2", H, True)
        d.lin(p + "mlp.fc1", I, H)
        d.lin(p + "mlp.fc2", H, I)
    d.norm(prefix + "post_layernorm", H, True)
    if with_head:
        h = prefix + "head."
        d.n(h + "probe", (1, 1, H), 1.0)
        d.n(h + "attention.in_proj_weight", (3 * H, H), 1.0 / math.sqrt(H))
        d.n(h + "attention.in_proj_bias", (3 * H,), 0.1)
        d.lin(h + "attention.out_proj", H, H)
        d.norm(h + "layernorm", H, True)
        d.lin(h + "mlp.fc1", I, H)
        d.lin(h + "mlp.fc2", H, I)


def quantize_all(W, dtype):
    """-> (stored dict name -> (dtype, array), float64 torch dict of the decoded values)"""
    stored, dec = {}, {}
    for k, v in W.items():
        s, f = hf.quantize(v, dtype)
        stored[k] = (dtype, s)
        dec[k] = torch.from_numpy(f)
    return stored, dec


def write_model(folder, stored, shards=None):
    os.makedirs(folder, exist_ok=True)
    if not shards:
        hf.write_safetensors(os.path.join(folder, "model.safetensors"), stored, metadata={"format": "pt"})
        return
    names = sorted(stored)
    groups = [[n for n in names if shards(n) == s] for s in range(max(map(shards, names)) + 1)]
    total = len(groups)
    weight_map, total_size = {}, 0
    for s, g in enumerate(groups):
        fn = f"model-{s + 1:05d}-of-{total:05d}.safetensors"
        total_size += hf.write_safetensors(os.path.join(folder, fn), {n: stored[n] for n in g},
                                           metadata={"format": "pt"})
        for n in g:
            weight_map[n] = fn
    dump_hub_json(os.path.join(folder, "model.safetensors.index.json"),
              {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))})


def i64(x):
    return ("I64", np.asarray(x, dtype=np.int64))


def f64(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().numpy()
    return ("F64", np.asarray(x, dtype=np.float64))


# ----------------------------------------------------------------------------------------------------------------
# text models
# ----------------------------------------------------------------------------------------------------------------

TEXT_SPECS = [
    # name, config, dtype, shard rule, prompt, seed0, max_new, eos-from-path step
    dict(name="qwen2-gqa-bf16", dtype="BF16",
         config=qwen2_instruct_config(64, 4, 2, 3, 176, tie=False, dtype="bfloat16"),
         prompt=[IM_START, 17, 233, NL, 42, 99, 11, 310, IM_END, NL, IM_START, 301, NL], seed=1000,
         max_new=12, eos_step=7),
    dict(name="qwen2-tied-f16", dtype="F16",
         config=qwen25_base_config(96, 6, 2, 2, 256, dtype="float16"),
         prompt=[ENDOFTEXT, 5, 77, 130, 402, 9, 250, 63, 88, 21], seed=2000, max_new=12, eos_step=None),
    dict(name="qwen2-sharded-f32", dtype="F32",
         config=qwen2_instruct_config(48, 4, 1, 3, 128, tie=False, dtype="float32", theta=10000.0),
         prompt=[IM_START, 444, 12, 13, 14, NL, 123, 321, 7, IM_END, NL, IM_START], seed=3000, max_new=12,
         eos_step=None, shards=True),
]


def text_generation_config(spec, eos_ids):
    c = spec["config"]
    g = {"bos_token_id": c["bos_token_id"], "do_sample": False,
         "eos_token_id": eos_ids if len(eos_ids) > 1 else eos_ids[0]}
    if spec["name"] == "qwen2-tied-f16":
        g["max_new_tokens"] = 2048  # Qwen2.5-0.5B generation_config.json carries this
    else:
        g["pad_token_id"] = ENDOFTEXT
    g["transformers_version"] = "4.40.1"
    return g


def shard_rule_qwen2(L):
    def rule(n):
        if n.startswith("model.embed_tokens"):
            return 0
        if n.startswith("model.layers."):
            i = int(n.split(".")[2])
            return 0 if i < L // 2 else 1
        return 2  # final norm, lm_head
    return rule


def build_text(spec):
    cfg = spec["config"]
    seed = spec["seed"]
    while True:
        d = Draw(seed)
        draw_qwen2(d, cfg, "model.", "lm_head.weight")
        stored, W = quantize_all(d.W, spec["dtype"])
        m = hf.Qwen2(cfg, W)
        base_eos = [cfg["eos_token_id"]]
        gen, margins, _ = hf.greedy_generate(m.logits, spec["prompt"], spec["max_new"], base_eos)
        ok = len(gen) == spec["max_new"] and min(margins) >= MIN_MARGIN and len(set(gen)) >= 4
        eos_ids = base_eos
        if ok and spec["eos_step"] is not None:
            k = spec["eos_step"]
            tok = gen[k - 1]
            ok = tok not in gen[:k - 1] and tok not in spec["prompt"]
            eos_ids = base_eos + [tok]
        if ok:
            break
        seed += 1
    gen, margins, prompt_logits = hf.greedy_generate(m.logits, spec["prompt"], spec["max_new"], eos_ids)
    step_logits = torch.stack([m.logits(spec["prompt"] + gen[:i])[-1] for i in range(len(gen))])
    folder = os.path.join(ROOT, spec["name"])
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    write_model(folder, stored, shard_rule_qwen2(cfg["num_hidden_layers"]) if spec.get("shards") else None)
    dump_hub_json(os.path.join(folder, "config.json"), cfg)
    dump_hub_json(os.path.join(folder, "generation_config.json"), text_generation_config(spec, eos_ids))
    hf.write_safetensors(os.path.join(GOLD, spec["name"] + ".safetensors"), {
        "prompt_ids": i64(spec["prompt"]),
        "logits": f64(prompt_logits),
        "generated_ids": i64(gen),
        "generated_logits": f64(step_logits),
    })
    meta = {
        "model": spec["name"],
        "seed": seed,
        "weights_dtype": spec["dtype"],
        "prompt_ids": spec["prompt"],
        "max_new_tokens": spec["max_new"],
        "eos_token_ids": eos_ids,
        "generated_ids": gen,
        "stopped_on_eos": gen[-1] in eos_ids,
        "top2_margins": margins,
        "min_top2_margin": min(margins),
    }
    dump_json(os.path.join(GOLD, spec["name"] + ".json"), meta)
    print(f"{spec['name']}: seed {seed}, generated {gen}, min margin {min(margins):.4f}")


# ----------------------------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------------------------

def make_image(w, h, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * xx / max(w - 1, 1)
    g = 255 * yy / max(h - 1, 1)
    b = 128 + 100 * np.sin((xx + 2 * yy) / 5.0)
    # blocky noise (4x4 cells) keeps the PNGs small but gives the resampler texture
    noise = rng.normal(0, 14, ((h + 3) // 4, (w + 3) // 4, 3)).repeat(4, 0).repeat(4, 1)[:h, :w]
    arr = np.stack([r, g, b], -1) + noise
    img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    dr = ImageDraw.Draw(img)
    for _ in range(4):
        x0, x1 = sorted(rng.integers(0, w, 2).tolist())
        y0, y1 = sorted(rng.integers(0, h, 2).tolist())
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        (dr.ellipse if rng.random() < 0.5 else dr.rectangle)([x0, y0, x1 + 1, y1 + 1], fill=col)
    return img


# (name, width, height, why)
LLAVA_IMAGES = [
    ("small-20x14", 20, 14, "smaller than one tile: upscaled into a 1x1 grid, unpad keeps 2 of 4 rows"),
    ("wide10-250x25", 250, 25, "10:1 wide: 1x6 grid, unpad keeps 2 of 4 feature rows"),
    ("tall12-20x240", 20, 240, "1:12 tall: 6x1 grid, unpad keeps 2 of 4 feature columns"),
    ("square-110x110", 110, 110, "5x5 grid, 20x20 features; the anyres_max_9 downscale hits Python float floor "
                                  "division: 20 // 1.6666666666666667 == 11.0 while floor(20 / 1.66...67) == 12"),
    ("large-400x300", 400, 300, "large: 5x6 grid (30 tiles), unpad then downscale"),
    ("mid-100x64", 100, 64, "3x5 grid, unpad removes feature columns, then downscale"),
    ("gray-77x53", 77, 53, "grayscale (mode L) PNG: do_convert_rgb replicates the channel; 3x4 grid, downscale"),
]
SIGLIP_IMAGE = ("siglip-75x50", 75, 50)


def write_images():
    os.makedirs(IMAGES, exist_ok=True)
    paths = {}
    for k, (name, w, h, *_rest) in enumerate(LLAVA_IMAGES + [SIGLIP_IMAGE]):
        p = os.path.join(IMAGES, name + ".png")
        img = make_image(w, h, 500 + k)
        if name.startswith("gray-"):
            img = img.convert("L")
        img.save(p, format="PNG")
        paths[name] = p
    return paths


def load_png(path):
    with Image.open(path) as im:
        im.load()
        return im.copy()


# ----------------------------------------------------------------------------------------------------------------
# SigLIP
# ----------------------------------------------------------------------------------------------------------------

def build_siglip(paths):
    cfg = siglip_vision_config()
    pp = siglip_preprocessor_config(cfg["image_size"])
    d = Draw(4000)
    draw_siglip(d, cfg, "vision_model.", True)
    stored, W = quantize_all(d.W, "F32")
    folder = os.path.join(ROOT, "siglip-tiny")
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    write_model(folder, stored)
    dump_hub_json(os.path.join(folder, "config.json"), cfg)
    dump_hub_json(os.path.join(folder, "preprocessor_config.json"), pp)
    name = SIGLIP_IMAGE[0]
    pv = hf.siglip_preprocess(load_png(paths[name]), pp)
    out = hf.siglip_vision(cfg, W, pv)
    hf.write_safetensors(os.path.join(GOLD, "siglip-tiny.safetensors"), {
        "pixel_values": f64(pv),
        "embeddings": f64(out["hidden_states"][0]),
        "last_hidden_state": f64(out["last_hidden_state"]),
        "pooler_output": f64(out["pooler_output"]),
    })
    dump_json(os.path.join(GOLD, "siglip-tiny.json"), {
        "model": "siglip-tiny",
        "image": f"images/{name}.png",
        "image_width": SIGLIP_IMAGE[1], "image_height": SIGLIP_IMAGE[2],
        "num_patches": (cfg["image_size"] // cfg["patch_size"]) ** 2,
    })
    print("siglip-tiny: done")


# ----------------------------------------------------------------------------------------------------------------
# LLaVA-OneVision
# ----------------------------------------------------------------------------------------------------------------

LLAVA_PROMPT = [IM_START, 320, NL, IMAGE, NL, 77, 150, 201, 63, IM_END, NL, IM_START, 45, NL]
LLAVA_MAX_NEW = 8
LLAVA_DEBUG_IMAGES = ("small-20x14", "wide10-250x25")  # also store the selected vision hidden states for these


def llava_processor_goldens(paths):
    pp = llava_preprocessor_config()
    out, meta = {}, []
    for name, w, h, why in LLAVA_IMAGES:
        r = hf.llava_preprocess(load_png(paths[name]), pp)
        cnt = hf.llava_num_image_tokens(h, w, LLAVA_CROP, LLAVA_PATCH, LLAVA_PINPOINTS, 9)
        assert tuple(cnt["best_resolution"]) == r["best_resolution"]
        out[name] = (r, cnt)
        meta.append({"name": name, "image": f"images/{name}.png", "width": w, "height": h, "note": why,
                     "image_size": list(r["image_size"]), "best_resolution": list(r["best_resolution"]),
                     "resized_size": list(r["resized_size"]), "padding": [list(x) for x in r["padding"]],
                     "num_tiles_plus_base": int(r["pixel_values"].shape[0]), "grid": cnt["grid"],
                     "unpadded_grid": cnt["unpadded"], "final_grid": cnt["final"],
                     "downscaled": cnt["downscaled"], "num_image_tokens": cnt["tokens"]})
    tensors = {}
    for name, (r, cnt) in out.items():
        tensors[f"{name}.pixel_values"] = f64(r["pixel_values"])
        tensors[f"{name}.image_size"] = i64(r["image_size"])
        tensors[f"{name}.best_resolution"] = i64(r["best_resolution"])
        tensors[f"{name}.num_image_tokens"] = i64([cnt["tokens"]])
    hf.write_safetensors(os.path.join(GOLD, "llava-ov-processor.safetensors"), tensors)
    dump_json(os.path.join(GOLD, "llava-ov-processor.json"), {
        "preprocessor_config": "llava-ov-tiny/preprocessor_config.json (identical in llava-ov-tiny-new)",
        "images": meta})
    return out


def draw_llava(seed, cfg, naming):
    d = Draw(seed)
    if naming == "old":
        vp, pp, nl, lp, head = ("vision_tower.vision_model.", "multi_modal_projector.", "image_newline",
                                "language_model.model.", "language_model.lm_head.weight")
    else:
        vp, pp, nl, lp, head = ("model.vision_tower.vision_model.", "model.multi_modal_projector.",
                                "model.image_newline", "model.language_model.", "lm_head.weight")
    draw_siglip(d, cfg["vision_config"], vp, False)
    Hv, Ht = cfg["vision_config"]["hidden_size"], cfg["text_config"]["hidden_size"]
    d.lin(pp + "linear_1", Ht, Hv)
    d.lin(pp + "linear_2", Ht, Ht)
    d.n(nl, (Ht,), 0.5)
    draw_qwen2(d, cfg["text_config"], lp, head)
    return d.W


def build_llava(name, cfg, naming, dtype, seed0, proc, gen_cfg):
    seed = seed0
    eos = gen_cfg["eos_token_id"]
    eos = eos if isinstance(eos, list) else [eos]
    while True:
        stored, W = quantize_all(draw_llava(seed, cfg, naming), dtype)
        m = hf.LlavaOnevision(cfg, W, naming)
        results, ok = {}, True
        for img, (r, cnt) in proc.items():
            trace = {}
            feats, vis = m.image_features(r["pixel_values"], r["image_size"], trace)
            assert feats.shape[0] == cnt["tokens"], (img, feats.shape, cnt)
            assert list(trace["final_grid"]) == cnt["final"] and trace["downscaled"] == cnt["downscaled"]
            ids, i0 = m.expand_prompt(LLAVA_PROMPT, feats.shape[0])
            gen, margins, lg = hf.greedy_generate(lambda s: m.logits(s, feats), ids, LLAVA_MAX_NEW, eos)
            if min(margins) < MIN_MARGIN or IMAGE in gen or len(set(gen)) < 3:
                print(f"  {name} seed {seed}: rejected on {img} (gen {gen}, margin {min(margins):.4f})")
                ok = False
                break
            results[img] = (feats, vis, ids, i0, gen, margins, lg)
        if ok:
            break
        seed += 1
    folder = os.path.join(ROOT, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    write_model(folder, stored)
    dump_hub_json(os.path.join(folder, "config.json"), cfg)
    dump_hub_json(os.path.join(folder, "generation_config.json"), gen_cfg)
    dump_hub_json(os.path.join(folder, "preprocessor_config.json"), llava_preprocessor_config())
    tensors, meta = {}, []
    for img, (feats, vis, ids, i0, gen, margins, lg) in results.items():
        n = feats.shape[0]
        tail = i0 + n - 1
        tensors[f"{img}.image_features"] = f64(feats)
        tensors[f"{img}.input_ids"] = i64(ids)
        tensors[f"{img}.logits_tail"] = f64(lg[tail:])
        tensors[f"{img}.generated_ids"] = i64(gen)
        if img in LLAVA_DEBUG_IMAGES:
            tensors[f"{img}.vision_hidden"] = f64(vis)
        meta.append({"name": img, "num_image_tokens": n, "image_token_start": i0, "expanded_length": len(ids),
                     "logits_tail_start": tail, "generated_ids": gen, "top2_margins": margins,
                     "min_top2_margin": min(margins), "stopped_on_eos": gen[-1] in eos})
    hf.write_safetensors(os.path.join(GOLD, name + ".safetensors"), tensors)
    dump_json(os.path.join(GOLD, name + ".json"), {
        "model": name, "naming": naming, "seed": seed, "weights_dtype": dtype,
        "prompt_ids_before_expansion": LLAVA_PROMPT, "image_token_index": IMAGE,
        "max_new_tokens": LLAVA_MAX_NEW, "eos_token_ids": eos,
        "min_top2_margin": min(x["min_top2_margin"] for x in meta), "images": meta})
    print(f"{name}: seed {seed}, min margin {min(x['min_top2_margin'] for x in meta):.4f}")


# ----------------------------------------------------------------------------------------------------------------
# the real 0.5B config: best resolution and image token counts
# ----------------------------------------------------------------------------------------------------------------

REAL_PINPOINTS = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]
REAL_SIZES = [(384, 384), (100, 100), (640, 480), (1024, 768), (1000, 1000), (1920, 1080), (1080, 1920),
              (1920, 1920), (2304, 2304), (4000, 500), (500, 4000), (3000, 300), (4032, 3024), (1366, 768),
              (800, 1280), (300, 3000), (2538, 1786)]


def real_token_counts():
    rows = []
    for w, h in REAL_SIZES:
        c = hf.llava_num_image_tokens(h, w, 384, 14, REAL_PINPOINTS, 9)
        old = hf.llava_num_image_tokens(h, w, 384, 14, REAL_PINPOINTS, 9, round_unpad=False)
        fh, fw = c["unpadded"]
        naive = None
        if c["downscaled"]:
            ratio = math.sqrt(fh * fw / (9 * 27 ** 2))
            naive_hw = (math.floor(fh / ratio), math.floor(fw / ratio))
            naive = 27 * 27 + naive_hw[0] * naive_hw[1] + naive_hw[0]
        rows.append({"width": w, "height": h, "best_resolution": c["best_resolution"], "grid": c["grid"],
                     "unpadded_grid": c["unpadded"], "final_grid": c["final"], "downscaled": c["downscaled"],
                     "num_image_tokens": c["tokens"],
                     **({"num_image_tokens_if_floor_of_true_division": naive}
                        if naive is not None and naive != c["tokens"] else {}),
                     **({"num_image_tokens_processor_before_pr35779": old["tokens"]}
                        if old["tokens"] != c["tokens"] else {})})
    dump_json(os.path.join(GOLD, "llava-ov-real-token-counts.json"), {
        "config": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf: crop 384, patch 14 (27x27 features per tile), "
                  "image_grid_pinpoints 384..2304 step 384 (36 entries, [height, width]), anyres_max_9, "
                  "vision_feature_select_strategy full",
        "fields": "best_resolution [height, width]; grid [rows, cols] of 384-px tiles; unpadded_grid / "
                  "final_grid [rows, cols] of features before / after the anyres_max_9 downscale; "
                  "num_image_tokens = 729 (base tile) + rows*cols + rows (image_newline per row)",
        "sizes": rows})
    return rows


def main():
    os.makedirs(GOLD, exist_ok=True)
    torch.set_num_threads(1)  # the machine is shared
    paths = write_images()
    for spec in TEXT_SPECS:
        build_text(spec)
    build_siglip(paths)
    proc = llava_processor_goldens(paths)
    build_llava("llava-ov-tiny", llava_old_config(), "old", "F16", 5000, proc,
                {"_from_model_config": True, "bos_token_id": ENDOFTEXT, "eos_token_id": IM_END,
                 "transformers_version": "4.45.0.dev0"})
    build_llava("llava-ov-tiny-new", llava_new_config(), "new", "BF16", 6000, proc,
                {"bos_token_id": ENDOFTEXT, "eos_token_id": [IM_END, ENDOFTEXT], "pad_token_id": ENDOFTEXT,
                 "transformers_version": "4.56.1"})
    real_token_counts()


if __name__ == "__main__":
    main()
