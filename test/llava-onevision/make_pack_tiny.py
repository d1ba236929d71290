"""Inputs for testing models/llava-onevision/pack.ts against the oracle's packed features of the tiny checkpoint
(test/fixtures/hf/goldens/llava-ov-tiny.safetensors "<image>.image_features"): for every image of
goldens/llava-ov-processor.json, the projected features BEFORE packing, [1 + tiles, side*side, D], computed by
the independent PyTorch oracle (test/hf/hf_torch.py: llava_preprocess -> SigLIP -> projector, float64), the
image size and image_newline. Writes test/fixtures/llava-onevision/pack-tiny.safetensors:
  <image>.projected (F64), <image>.image_size (I64 [h, w]), <image>.image_newline (F64 [D]).

Run after the oracle fixtures exist:  /usr/bin/python3 test/llava-onevision/make_pack_tiny.py
"""

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
    packed = m.pack(proj, r["image_size"])
    diff = float(np.max(np.abs(packed.numpy() - gold[f"{name}.image_features"])))
    assert diff < 1e-9, (name, diff)
    tensors[f"{name}.projected"] = ("F64", proj.numpy())
    tensors[f"{name}.image_size"] = ("I64", np.array(r["image_size"], dtype=np.int64))
    tensors[f"{name}.image_newline"] = ("F64", W[m.nl].numpy())
    print(name, tuple(proj.shape), "packed", tuple(packed.shape), "vs golden", diff)
hf.write_safetensors(OUT, tensors, {"torch": torch.__version__})
print(f"wrote {os.path.relpath(OUT)}")
