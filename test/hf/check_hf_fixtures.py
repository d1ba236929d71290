"""Self-check of the committed Hugging Face fixtures (catches writer bugs and oracle slips):

  1. re-loads every model folder with our own safetensors reader (sharded via the index), checks the file-level
     invariants (offsets tile the data, index total_size, tied head has no lm_head tensor, dtypes as configured),
     re-runs the oracle from the files and asserts it reproduces every golden;
  2. re-decodes the committed PNGs and re-runs both image processors;
  3. cross-checks oracle pieces against PyTorch's own modules (conv2d, layer_norm, gelu, MultiheadAttention,
     interpolate) and the tile-grid permutation against an explicit index loop;
  4. checks best-resolution / image-token counts for the real llava-onevision-qwen2-0.5b config against values
     worked out by hand from the transformers source, and against goldens/llava-ov-real-token-counts.json.

    /usr/bin/python3 test/hf/check_hf_fixtures.py
"""

import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_torch as hf  # noqa: E402
import gen_hf_fixtures as gen  # noqa: E402

ROOT, GOLD = gen.ROOT, gen.GOLD
F = torch.nn.functional
TOL = 1e-9
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def close(a, b, msg, tol=TOL):
    a = torch.as_tensor(np.asarray(a, dtype=np.float64)) if not isinstance(a, torch.Tensor) else a
    b = torch.as_tensor(np.asarray(b, dtype=np.float64)) if not isinstance(b, torch.Tensor) else b
    if a.shape != b.shape:
        check(False, f"{msg}: shape {tuple(a.shape)} != {tuple(b.shape)}")
        return
    d = float((a - b).abs().max()) if a.numel() else 0.0
    check(d <= tol, f"{msg}: max abs diff {d:g}")


def golden(name):
    t, _, _ = hf.read_safetensors(os.path.join(GOLD, name + ".safetensors"))
    return t, hf.load_json(os.path.join(GOLD, name + ".json"))


def file_checks(folder, cfg_dtype):
    want = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[cfg_dtype]
    idx = os.path.join(folder, "model.safetensors.index.json")
    files = (sorted(set(hf.load_json(idx)["weight_map"].values())) if os.path.exists(idx)
             else ["model.safetensors"])
    total = 0
    for fn in files:
        _, dtypes, meta = hf.read_safetensors(os.path.join(folder, fn))
        check(meta == {"format": "pt"}, f"{folder}/{fn}: __metadata__ {meta}")
        check(set(dtypes.values()) == {want}, f"{folder}/{fn}: dtypes {set(dtypes.values())} != {want}")
        with open(os.path.join(folder, fn), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            check(n % 8 == 0, f"{fn}: header length {n} not a multiple of 8")
        total += os.path.getsize(os.path.join(folder, fn)) - 8 - n
    if os.path.exists(idx):
        check(hf.load_json(idx)["metadata"]["total_size"] == total, f"{idx}: total_size")
        check(len(files) == 3, f"{folder}: {len(files)} shards")


def check_bf16_rounding():
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5, 3.0e-3], dtype=np.float32)
    got = hf.bf16_bits_to_f32(hf.f32_to_bf16_bits(x))
    want = np.array([1.0, 1.0, 1 + 4 * 2 ** -8, 1 + 2 ** -7, -2.5, 0.0030059814453125], dtype=np.float32)
    check(np.allclose(got, want, rtol=0, atol=1e-9), f"bf16 round-to-nearest-even: {got} vs {want}")


def check_text(spec):
    name = spec["name"]
    folder = os.path.join(ROOT, name)
    cfg = hf.load_json(os.path.join(folder, "config.json"))
    gcfg = hf.load_json(os.path.join(folder, "generation_config.json"))
    file_checks(folder, cfg["torch_dtype"])
    W = hf.load_checkpoint(folder)
    check(("lm_head.weight" in W) != cfg["tie_word_embeddings"], f"{name}: lm_head presence vs tie")
    m = hf.Qwen2(cfg, W)
    t, meta = golden(name)
    prompt = t["prompt_ids"].tolist()
    check(prompt == meta["prompt_ids"], f"{name}: prompt ids json vs safetensors")
    eos = gcfg["eos_token_id"] if isinstance(gcfg["eos_token_id"], list) else [gcfg["eos_token_id"]]
    check(eos == meta["eos_token_ids"], f"{name}: eos ids")
    gen_ids, margins, lg = hf.greedy_generate(m.logits, prompt, meta["max_new_tokens"], eos)
    close(lg, t["logits"], f"{name}: prompt logits")
    check(gen_ids == t["generated_ids"].tolist() == meta["generated_ids"], f"{name}: generated ids {gen_ids}")
    for i in range(len(gen_ids)):
        close(m.logits(prompt + gen_ids[:i])[-1], t["generated_logits"][i], f"{name}: step {i} logits")
    check(min(margins) > 1e-3 and abs(min(margins) - meta["min_top2_margin"]) < 1e-9, f"{name}: margin")
    print(f"ok {name}: {len(gen_ids)} ids, eos stop {meta['stopped_on_eos']}, min margin {min(margins):.4f}")


def check_torch_equivalents():
    rng = np.random.default_rng(7)
    # layer norm, gelu
    x = torch.from_numpy(rng.standard_normal((3, 5, 12)))
    w, b = torch.from_numpy(rng.standard_normal(12)), torch.from_numpy(rng.standard_normal(12))
    close(hf.layer_norm(x, w, b, 1e-6), F.layer_norm(x, (12,), w, b, 1e-6), "layer_norm vs F.layer_norm", 1e-12)
    close(hf.gelu_tanh(x), F.gelu(x, approximate="tanh"), "gelu_tanh vs F.gelu(tanh)", 1e-12)
    close(hf.gelu_erf(x), F.gelu(x), "gelu vs F.gelu", 1e-12)
    # patch embedding vs conv2d with a valid stride (image size not a multiple of the patch)
    cfg = hf.load_json(os.path.join(ROOT, "siglip-tiny", "config.json"))
    W = hf.load_checkpoint(os.path.join(ROOT, "siglip-tiny"))
    pv = torch.from_numpy(rng.standard_normal((2, 3, cfg["image_size"], cfg["image_size"])))
    out = hf.siglip_vision(cfg, W, pv)
    conv = F.conv2d(pv, W["vision_model.embeddings.patch_embedding.weight"],
                    W["vision_model.embeddings.patch_embedding.bias"], stride=cfg["patch_size"])
    emb = conv.flatten(2).transpose(1, 2) + W["vision_model.embeddings.position_embedding.weight"][None]
    close(out["hidden_states"][0], emb, "patch embedding vs F.conv2d", 1e-12)
    # pooling head vs nn.MultiheadAttention
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    mha = torch.nn.MultiheadAttention(H, nh, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(W["vision_model.head.attention.in_proj_weight"])
        mha.in_proj_bias.copy_(W["vision_model.head.attention.in_proj_bias"])
        mha.out_proj.weight.copy_(W["vision_model.head.attention.out_proj.weight"])
        mha.out_proj.bias.copy_(W["vision_model.head.attention.out_proj.bias"])
        last = out["last_hidden_state"]
        a = mha(W["vision_model.head.probe"].expand(2, 1, H), last, last)[0]
        p = "vision_model.head."
        t_ = hf.layer_norm(a, W[p + "layernorm.weight"], W[p + "layernorm.bias"], 1e-6)
        t_ = hf.linear(F.gelu(hf.linear(t_, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"]), approximate="tanh"),
                       W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"])
        close(out["pooler_output"], (a + t_)[:, 0], "pooling head vs nn.MultiheadAttention", 1e-12)
    # bilinear vs interpolate over many shapes (up and down)
    for (ih, iw, oh, ow) in [(20, 20, 11, 11), (18, 24, 10, 13), (7, 5, 3, 2), (4, 6, 9, 13), (12, 18, 9, 14)]:
        g = torch.from_numpy(rng.standard_normal((3, ih, iw)))
        close(hf.bilinear_resize(g, oh, ow),
              F.interpolate(g[None], size=[oh, ow], mode="bilinear", align_corners=False)[0],
              f"bilinear {ih}x{iw}->{oh}x{ow}", 1e-12)


def check_pack_permutation(m, proj, image_size):
    """Rebuilds the unpadded grid with an explicit loop: grid[c, r*s+i, q*s+j] = tile[r*ncols+q][i*s+j, c]."""
    S, side = m.vcfg["image_size"], m.vcfg["image_size"] // m.vcfg["patch_size"]
    bh, bw = hf.select_best_resolution(image_size, m.cfg["image_grid_pinpoints"])
    nr, nc = bh // S, bw // S
    D = proj.shape[-1]
    g = torch.zeros(D, nr * side, nc * side)
    for r in range(nr):
        for q in range(nc):
            for i in range(side):
                for j in range(side):
                    g[:, r * side + i, q * side + j] = proj[1 + r * nc + q, i * side + j]
    return hf.unpad_grid(g, image_size)


def check_siglip(paths):
    folder = os.path.join(ROOT, "siglip-tiny")
    cfg = hf.load_json(os.path.join(folder, "config.json"))
    pp = hf.load_json(os.path.join(folder, "preprocessor_config.json"))
    file_checks(folder, cfg["torch_dtype"])
    W = hf.load_checkpoint(folder)
    t, meta = golden("siglip-tiny")
    pv = hf.siglip_preprocess(gen.load_png(os.path.join(ROOT, meta["image"])), pp)
    close(pv, t["pixel_values"], "siglip pixel_values", 0.0)
    out = hf.siglip_vision(cfg, W, t["pixel_values"])
    close(out["hidden_states"][0], t["embeddings"], "siglip embeddings")
    close(out["last_hidden_state"], t["last_hidden_state"], "siglip last_hidden_state")
    close(out["pooler_output"], t["pooler_output"], "siglip pooler_output")
    print("ok siglip-tiny")


def check_llava_processor():
    pp = hf.load_json(os.path.join(ROOT, "llava-ov-tiny", "preprocessor_config.json"))
    check(pp == hf.load_json(os.path.join(ROOT, "llava-ov-tiny-new", "preprocessor_config.json")),
          "llava preprocessor configs differ")
    t, meta = golden("llava-ov-processor")
    for im in meta["images"]:
        n = im["name"]
        img = gen.load_png(os.path.join(ROOT, im["image"]))
        check(img.size == (im["width"], im["height"]), f"{n}: png size")
        r = hf.llava_preprocess(img, pp)
        close(r["pixel_values"], t[f"{n}.pixel_values"], f"{n}: pixel_values", 0.0)
        check(list(r["image_size"]) == t[f"{n}.image_size"].tolist() == im["image_size"], f"{n}: image_size")
        check(list(r["best_resolution"]) == t[f"{n}.best_resolution"].tolist() == im["best_resolution"],
              f"{n}: best_resolution")
        S = pp["size"]["height"]
        ntiles = (r["best_resolution"][0] // S) * (r["best_resolution"][1] // S)
        check(r["pixel_values"].shape == (ntiles + 1, 3, S, S), f"{n}: pixel_values shape")
        c = hf.llava_num_image_tokens(im["height"], im["width"], S, gen.LLAVA_PATCH, pp["image_grid_pinpoints"])
        check(c["tokens"] == int(t[f"{n}.num_image_tokens"][0]) == im["num_image_tokens"], f"{n}: token count")
    print(f"ok llava processor: {len(meta['images'])} images")
    return t, meta


def check_llava(name, naming, proc_t, proc_meta):
    folder = os.path.join(ROOT, name)
    cfg = hf.load_json(os.path.join(folder, "config.json"))
    gcfg = hf.load_json(os.path.join(folder, "generation_config.json"))
    file_checks(folder, cfg.get("torch_dtype") or cfg.get("dtype"))
    W = hf.load_checkpoint(folder)
    prefixes = {"old": ("vision_tower.vision_model.", "multi_modal_projector.", "language_model.model.", "image_newline"),
                "new": ("model.vision_tower.vision_model.", "model.multi_modal_projector.", "model.language_model.",
                        "model.image_newline")}[naming]
    check(all(k.startswith(prefixes) or k == "lm_head.weight" for k in W), f"{name}: unexpected tensor names")
    check(("lm_head.weight" in W) == (naming == "new"), f"{name}: lm_head.weight presence")
    check(not any(".head." in k for k in W), f"{name}: vision head tensors present")
    m = hf.LlavaOnevision(cfg, W, naming)
    t, meta = golden(name)
    eos = gcfg["eos_token_id"] if isinstance(gcfg["eos_token_id"], list) else [gcfg["eos_token_id"]]
    check(eos == meta["eos_token_ids"], f"{name}: eos ids")
    for im in meta["images"]:
        n = im["name"]
        pv = proc_t[f"{n}.pixel_values"]
        size = tuple(proc_t[f"{n}.image_size"].tolist())
        feats_sel = m.vision_features(pv)
        if f"{n}.vision_hidden" in t:
            close(feats_sel, t[f"{n}.vision_hidden"], f"{name}/{n}: vision_hidden")
        proj = m.project(feats_sel)
        trace = {}
        feats = m.pack(proj, size, trace)
        close(feats, t[f"{n}.image_features"], f"{name}/{n}: image_features")
        # independent permutation + base-first + newline layout
        g = check_pack_permutation(m, proj, size)
        check(list(g.shape[1:]) == list(trace["unpadded"]), f"{name}/{n}: unpadded grid")
        side = m.vcfg["image_size"] // m.vcfg["patch_size"]
        tgt = hf.anyres_max_target(g.shape[1], g.shape[2], 9, side)
        if tgt is not None:
            g = F.interpolate(g[None], size=list(tgt), mode="bilinear", align_corners=False)[0]
        rows = [torch.cat([g[:, r].T, m.W[m.nl][None]], 0) for r in range(g.shape[1])]
        close(torch.cat([proj[0]] + rows, 0), feats, f"{name}/{n}: packing by explicit loop")
        pmeta = next(x for x in proc_meta["images"] if x["name"] == n)
        check(feats.shape[0] == im["num_image_tokens"] == pmeta["num_image_tokens"], f"{name}/{n}: n tokens")
        ids, i0 = m.expand_prompt(meta["prompt_ids_before_expansion"], feats.shape[0])
        check(ids == t[f"{n}.input_ids"].tolist(), f"{name}/{n}: expanded input ids")
        check(i0 == im["image_token_start"] and len(ids) == im["expanded_length"], f"{name}/{n}: positions")
        gen_ids, margins, lg = hf.greedy_generate(lambda s: m.logits(s, feats), ids, meta["max_new_tokens"], eos)
        close(lg[im["logits_tail_start"]:], t[f"{n}.logits_tail"], f"{name}/{n}: logits tail")
        check(gen_ids == t[f"{n}.generated_ids"].tolist() == im["generated_ids"], f"{name}/{n}: generated ids")
        check(min(margins) > 1e-3, f"{name}/{n}: margin {min(margins)}")
    print(f"ok {name}: {len(meta['images'])} images")


# hand-worked from the transformers source (see README "Hand-worked token counts"); (width, height) -> tokens
HAND_WORKED_REAL = {
    (384, 384): ([384, 384], 1485),
    (100, 100): ([384, 384], 1485),
    (1000, 1000): ([1152, 1152], 7371),
    (1920, 1080): ([1152, 1920], 7269),
    (4000, 500): ([384, 2304], 4152),
    (500, 4000): ([2304, 384], 4293),
    (1920, 1920): ([1920, 1920], 7209),
    (2304, 2304): ([2304, 2304], 7371),
}


def check_real_counts():
    pins = gen.REAL_PINPOINTS
    for (w, h), (best, tokens) in HAND_WORKED_REAL.items():
        c = hf.llava_num_image_tokens(h, w, 384, 14, pins, 9)
        check(c["best_resolution"] == best and c["tokens"] == tokens, f"real {w}x{h}: {c} vs {best}, {tokens}")
    # the model-side packing (unpad + downscale on a 1-channel dummy grid) must give the same counts
    cfg = {"vision_config": {"image_size": 384, "patch_size": 14}, "image_grid_pinpoints": pins,
           "vision_aspect_ratio": "anyres_max_9"}
    m = hf.LlavaOnevision.__new__(hf.LlavaOnevision)
    m.cfg, m.vcfg, m.nl, m.W = cfg, cfg["vision_config"], "nl", {"nl": torch.zeros(1)}
    data = hf.load_json(os.path.join(GOLD, "llava-ov-real-token-counts.json"))
    check(len(data["sizes"]) >= 8, "real token counts: fewer than 8 sizes")
    for row in data["sizes"]:
        w, h = row["width"], row["height"]
        c = hf.llava_num_image_tokens(h, w, 384, 14, pins, 9)
        check(c["tokens"] == row["num_image_tokens"] and c["best_resolution"] == row["best_resolution"],
              f"real json {w}x{h}")
        nr, nc = c["grid"]
        proj = torch.zeros(1 + nr * nc, 27 * 27, 1)
        check(m.pack(proj, (h, w)).shape[0] == row["num_image_tokens"], f"real {w}x{h}: model-side pack length")
    print(f"ok real 0.5B token counts: {len(data['sizes'])} sizes, {len(HAND_WORKED_REAL)} hand-worked")


def main():
    torch.set_num_threads(1)
    check_bf16_rounding()
    check(50 // 1.1111111111111112 == 44.0 and math.floor(50 / 1.1111111111111112) == 45, "python // corner")
    for spec in gen.TEXT_SPECS:
        check_text(spec)
    check_torch_equivalents()
    print("ok torch cross-checks")
    check_siglip(None)
    proc_t, proc_meta = check_llava_processor()
    check_llava("llava-ov-tiny", "old", proc_t, proc_meta)
    check_llava("llava-ov-tiny-new", "new", proc_t, proc_meta)
    check_real_counts()
    if failures:
        print(f"{len(failures)} FAILURES")
        sys.exit(1)
    print("all fixture checks passed")


if __name__ == "__main__":
    main()
