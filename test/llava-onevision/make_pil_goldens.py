"""PIL goldens for models/llava-onevision/resample.ts (PIL-exact Image.resize) and the RGBA -> RGB conversion of
transformers' convert_to_rgb. Writes test/fixtures/llava-onevision/pil-resize.safetensors (U8 tensors):

  src.<name>                      source image [H, W, C] (C = 3, or 4 for the RGBA one)
  out.<name>.<filter>.<W>x<H>     PIL Image.resize((W, H), resample=filter) of src.<name>, [H, W, 3]
  rgb.<name>                      transformers convert_to_rgb of an RGBA source: PIL image.convert("RGB")

Run with Debian's Pillow:  /usr/bin/python3 test/llava-onevision/make_pil_goldens.py
"""

import json
import os
import struct

import numpy as np
import PIL
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "llava-onevision", "pil-resize.safetensors")


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype=np.uint8)
        b = arr.tobytes()
        header[name] = {"dtype": "U8", "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


rng = np.random.RandomState(1234)
sources = {}
# noise: every neighbour differs, so a wrong tap or weight shows
sources["noise37x23"] = rng.randint(0, 256, size=(23, 37, 3)).astype(np.uint8)
# smooth ramps with a hard edge and saturated areas (clipping of bicubic overshoot)
yy, xx = np.mgrid[0:48, 0:64]
smooth = np.stack([(xx * 4) % 256, (yy * 5 + xx) % 256, np.where((xx > 20) & (yy < 30), 255, 0)], -1)
sources["edges64x48"] = smooth.astype(np.uint8)
# a one-pixel-wide and a one-pixel-tall strip
sources["col1x30"] = rng.randint(0, 256, size=(30, 1, 3)).astype(np.uint8)
sources["row40x1"] = rng.randint(0, 256, size=(1, 40, 3)).astype(np.uint8)
# checkerboard (worst case for ringing) 17x19
cb = ((np.mgrid[0:19, 0:17].sum(0) % 2) * 255).astype(np.uint8)
sources["checker17x19"] = np.stack([cb, 255 - cb, cb // 2], -1)

sizes = {
    "noise37x23": [(13, 7), (20, 20), (5, 40), (80, 50), (111, 37), (70, 10), (37, 50), (60, 23), (1, 1), (36, 22), (38, 24), (9, 3)],
    "edges64x48": [(16, 12), (27, 31), (96, 96), (130, 90), (64, 17), (13, 48), (63, 47), (65, 49)],
    "col1x30": [(5, 7), (1, 100), (3, 30), (2, 1)],
    "row40x1": [(7, 5), (100, 1), (40, 3), (13, 2)],
    "checker17x19": [(5, 6), (34, 38), (50, 19), (17, 7), (60, 61)],
}
filters = {1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

tensors = {}
for name, arr in sources.items():
    tensors[f"src.{name}"] = arr
    im = Image.fromarray(arr, "RGB")
    for (w, h) in sizes[name]:
        for f, fname in filters.items():
            out = np.asarray(im.resize((w, h), resample=f))
            assert out.shape == (h, w, 3)
            tensors[f"out.{name}.{fname}.{w}x{h}"] = out

# RGBA -> RGB as transformers.image_transforms.convert_to_rgb does (image.convert("RGB"): alpha dropped)
rgba = rng.randint(0, 256, size=(16, 16, 4)).astype(np.uint8)
rgba[0, :, 3] = 0
rgba[1, :, 3] = 255
im = Image.fromarray(rgba, "RGBA")
rgb = np.asarray(im.convert("RGB"))
tensors["src.rgba16x16"] = rgba
tensors["rgb.rgba16x16"] = rgb

write_safetensors(OUT, tensors, {"pillow": PIL.__version__, "numpy": np.__version__})
print(f"wrote {len(tensors)} tensors to {os.path.relpath(OUT)} (Pillow {PIL.__version__})")
