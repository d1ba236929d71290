"""A self-contained golden for models/llava-onevision/pack.ts on real projected features: for every image of
test/fixtures/hf/goldens/llava-ov-processor.json, the tiny checkpoint's projected features BEFORE packing,
[1 + tiles, side*side, D], computed by the independent PyTorch oracle (test/hf/hf_torch.py: llava_preprocess ->
SigLIP -> projector, float64) and rounded to float32, and the oracle's pack_image_features of those rounded values
(float64). Checked here against the oracle's own golden (goldens/llava-ov-tiny.safetensors "<image>.image_features")
within the float32 rounding. Writes test/fixtures/llava-onevision/pack-tiny.safetensors:
  <image>.projected (F32), <image>.image_size (I64 [h, w]), <image>.image_newline (F32 [D]), <image>.packed (F64),
and pack-tiny-config.json (the checkpoint's config.json, whose image fields the packing reads).

Run after the oracle fixtures exist:  /usr/bin/python3 test/llava-onevision/make_pack_tiny.py
"""

import json
import os
import sys

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "hf"))
import hf_torch as hf  # noqa: E402

HF = os.path.join(HERE, "..", "fixtures", "hf")
OUT = os.path.join(HERE, "..", "fixtures", "llava-onevision", "pack-tiny.safetensors")

folder = os.path.join(HF, "llava-ov-tiny")
cfg = hf.load_json(os.path.join(folder, "config.json"))
pp = hf.load_json(os.path.join(folder, "preprocessor_config.json"))
W = hf.load_checkpoint(folder)
m = hf.LlavaOnevision(cfg, W, "old")
gold, _, _ = hf.read_safetensors(os.path.join(HF, "goldens", "llava-ov-tiny.safetensors"))
meta = hf.load_json(os.path.join(HF, "goldens", "llava-ov-processor.json"))
tensors = {}
for im in meta["images"]:
    name = im["name"]
    with Image.open(os.path.join(HF, im["image"])) as f:
        f.load()
        img = f.copy()
    r = hf.llava_preprocess(img, pp)
    proj = m.project(m.vision_features(torch.from_numpy(np.asarray(r["pixel_values"]))))
    proj32 = proj.numpy().astype(np.float32)
    nl32 = W[m.nl].numpy().astype(np.float32)
    m.W = dict(W, **{m.nl: torch.from_numpy(nl32.astype(np.float64))})
    packed = m.pack(torch.from_numpy(proj32.astype(np.float64)), r["image_size"])
    m.W = W
    want = gold[f"{name}.image_features"]
    diff = float(np.max(np.abs(packed.numpy() - want)) / np.max(np.abs(want)))
    assert diff < 1e-6, (name, diff)
    tensors[f"{name}.projected"] = ("F32", proj32)
    tensors[f"{name}.image_size"] = ("I64", np.array(r["image_size"], dtype=np.int64))
    tensors[f"{name}.image_newline"] = ("F32", nl32)
    tensors[f"{name}.packed"] = ("F64", packed.numpy())
    print(name, tuple(proj.shape), "packed", tuple(packed.shape), "vs golden", diff)
hf.write_safetensors(OUT, tensors, {"torch": torch.__version__, "checkpoint": "test/fixtures/hf/llava-ov-tiny",
                                   "seed": str(hf.load_json(os.path.join(HF, "goldens", "llava-ov-tiny.json"))["seed"])})
# the config the packing reads (grid pinpoints, image/patch size, anyres_max_N), next to the golden
with open(os.path.join(os.path.dirname(OUT), "pack-tiny-config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
print(f"wrote {os.path.relpath(OUT)}")
