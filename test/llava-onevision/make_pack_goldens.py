"""Goldens for models/llava-onevision/pack.ts at the REAL 0.5B geometry (SigLIP 384/14: 27x27 features per tile,
pinpoints 384..2304 step 384, anyres_max_9), from the independent PyTorch oracle's pack_image_features
(test/hf/hf_torch.py, LlavaOnevision.pack, float64, checked there against torch.nn.functional.interpolate).

The projected features are synthetic and exactly reproducible in TypeScript (no need to store them):
  proj[t, i, c] = ((t * 7919 + i * 104729 + c * 31337) % 1009) / 1009 - 0.5      (t tile, i token, c channel)
  image_newline[c] = 10 + c
Writes test/fixtures/llava-onevision/pack-real.safetensors: "<h>x<w>" -> packed features [N, D] (F64), and
"<h>x<w>.layout" -> I64 [best_h, best_w, unpadded_h, unpadded_w, final_h, final_w, N].

Run:  /usr/bin/python3 test/llava-onevision/make_pack_goldens.py
"""

import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "hf"))
import hf_torch as hf  # noqa: E402

OUT = os.path.join(HERE, "..", "fixtures", "llava-onevision", "pack-real.safetensors")
D = 2
PINPOINTS = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]
# (height, width): downscaled with Python's 50 // 1.1111111111111112 == 44 (585x1929, 1929x585), ratio exactly 2
# (2304x2304), 16:9 photos, round(x, 7) != int(x) (617x1234), one-pixel strips, no downscale (500x1000, 333x777)
SIZES = [(585, 1929), (1929, 585), (2304, 2304), (1080, 1920), (617, 1234), (500, 1000), (333, 777),
         (1, 10000), (10000, 1), (384, 384)]


def proj_for(tiles, n):
    t = np.arange(tiles)[:, None, None]
    i = np.arange(n * n)[None, :, None]
    c = np.arange(D)[None, None, :]
    return ((t * 7919 + i * 104729 + c * 31337) % 1009) / 1009.0 - 0.5


cfg = {"vision_config": {"image_size": 384, "patch_size": 14}, "image_grid_pinpoints": PINPOINTS,
       "vision_aspect_ratio": "anyres_max_9"}
me = types.SimpleNamespace(cfg=cfg, vcfg=cfg["vision_config"], nl="image_newline",
                           W={"image_newline": torch.tensor([10.0 + c for c in range(D)], dtype=torch.float64)})
tensors = {}
for h, w in SIZES:
    bh, bw = hf.select_best_resolution((h, w), PINPOINTS)
    tiles = 1 + (bh // 384) * (bw // 384)
    proj = torch.tensor(proj_for(tiles, 27), dtype=torch.float64)
    trace = {}
    out = hf.LlavaOnevision.pack(me, proj, (h, w), trace)
    cnt = hf.llava_num_image_tokens(h, w, 384, 14, PINPOINTS, 9)
    assert out.shape[0] == cnt["tokens"], (h, w, out.shape, cnt)
    tensors[f"{h}x{w}"] = ("F64", out.numpy())
    tensors[f"{h}x{w}.layout"] = ("I64", np.array([bh, bw, *trace["unpadded"], *trace["final_grid"], out.shape[0]],
                                                  dtype=np.int64))
    print(h, w, (bh, bw), trace, out.shape[0])
hf.write_safetensors(OUT, tensors, {"torch": torch.__version__})
print(f"wrote {os.path.relpath(OUT)}")
