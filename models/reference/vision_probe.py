"""Vision-only probe (models/reference/TRAINING.md, "The widened task"): how well do the tower's visual tokens
encode each cell's colour, shape and size on the widened data? Trains the vision tower, projector and the
auxiliary cell-attribute probes (train_vqa.AuxHeads) alone, --steps steps of 48 pictures, and prints the probes'
accuracy on the occupied cells of 200 validation pictures every 100 steps.

  /usr/bin/python3 models/reference/vision_probe.py --patch 16 --steps 400
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
import vqa_data as V, train_vqa as T
from lavi_torch import LaviForConditionalGeneration
from types import SimpleNamespace
ap = argparse.ArgumentParser()
ap.add_argument('--patch', type=int, default=16)
ap.add_argument('--steps', type=int, default=300)
ap.add_argument('--width', type=int, default=128)
a = ap.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
ns = SimpleNamespace(mode='lavi', patch=a.patch, vit_width=a.width, vit_layers=3, vit_heads=4, d=192, ffn=512, layers=1,
                     heads=4, kv_heads=2, cond_r=64, cond_heads=4, modulate_final_norm=False)
cfg = T.build_config(ns, 300, [1, 2])
m = LaviForConditionalGeneration(cfg)
m.init_weights(std=0.02)
aux = T.AuxHeads(192, cfg.vision_config.grid)
params = list(m.vision_model.parameters()) + list(m.lavi.projector.parameters()) + list(aux.parameters())
opt = torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.98), weight_decay=0.05)
stream = V.WideTrainStream()
items = V.heldout_wide('valw')[:200]
vpix = torch.stack([V.to_model_pixels(V.render_wide(s, st), cfg.vision_config, torch.float32)[0] for s, st in items])
vcells = torch.stack([T.cell_labels(s) for s, _ in items])
t0 = time.time()
def evaluate():
    with torch.no_grad():
        Vt = m.encode_image(vpix)
        lab = vcells[:, aux.cell_of_patch]
        out = {}
        for k, name in enumerate(['color', 'shape', 'size']):
            pred = aux.heads[k](Vt).argmax(-1)
            occ = lab[..., k] > 0
            out[name] = round(float((pred == lab[..., k])[occ].float().mean()), 3)
        return out
for step in range(a.steps):
    lr = 2e-3 * min(1.0, (step + 1) / 50)
    for g in opt.param_groups:
        g['lr'] = lr
    imgs, cells = [], []
    for j in range(48):
        s, st = stream.scene_and_style(step * 48 + j)
        imgs.append(V.to_model_pixels(V.render_wide(s, st), cfg.vision_config, torch.float32)[0])
        cells.append(T.cell_labels(s))
    Vt = m.encode_image(torch.stack(imgs))
    loss = aux(Vt, torch.stack(cells))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if (step + 1) % 100 == 0:
        print(json.dumps({'patch': a.patch, 'step': step + 1, 'loss': round(float(loss), 4), 'val': evaluate(), 'time': round(time.time() - t0, 1)}), flush=True)
