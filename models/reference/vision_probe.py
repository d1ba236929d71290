"""Vision-only probe (models/reference/TRAINING.md, "The widened task"): how well do the tower's visual tokens
encode each cell's colour, shape and size on the widened data? Trains the vision tower, projector and the
auxiliary cell-attribute probes (train_vqa.AuxHeads) alone, --steps steps of 48 pictures, and prints the probes'
accuracy on the occupied cells of 200 validation pictures every --eval-every steps; --save keeps the tower
and projector as the starting point of train_vqa.py --init-vision-from.

  /usr/bin/python3 models/reference/vision_probe.py --patch 16 --steps 400
"""
import argparse
import json
import math
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
ap.add_argument('--layers', type=int, default=3)
ap.add_argument('--stem', default='', help='conv stem channels, e.g. 32,64,128')
ap.add_argument('--resample', type=int, choices=[1, 2, 3, 4, 5], default=None, help='PIL filter for the resize to the input (train_vqa.py --resample)')
ap.add_argument('--small-pictures', type=float, default=0.0, help='share of 24..47 px pictures (train_vqa.py --small-pictures)')
ap.add_argument('--image-size', type=int, default=None, help='the model input (default vqa_data.IMAGE_SIZE, 48), a multiple of --patch')
ap.add_argument('--d', type=int, default=192, help='the LLM width the projector maps to')
ap.add_argument('--batch', type=int, default=48)
ap.add_argument('--lr', type=float, default=2e-3)
ap.add_argument('--cosine', action='store_true', help='cosine decay to 5% after the warm-up (default: constant)')
ap.add_argument('--eval-every', type=int, default=100)
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--save', default=None, help='write the tower and projector (vision_model.*, lavi.projector.*) here')
a = ap.parse_args()
T.check_image_size(ap, a.image_size, a.patch)
torch.set_num_threads(a.threads)
torch.manual_seed(0)
ns = SimpleNamespace(mode='lavi', patch=a.patch, vit_width=a.width, vit_layers=a.layers, vit_heads=4, d=a.d, stem=a.stem, ffn=512, layers=1,
                     heads=4, kv_heads=2, cond_r=64, cond_heads=4, modulate_final_norm=False, resample=a.resample,
                     image_size=a.image_size)
cfg = T.build_config(ns, 300, [1, 2])
m = LaviForConditionalGeneration(cfg)
m.init_weights(std=0.02)
aux = T.AuxHeads(a.d, cfg.vision_config.grid)
params = list(m.vision_model.parameters()) + list(m.lavi.projector.parameters()) + list(aux.parameters())
opt = torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.98), weight_decay=0.05)
stream = V.WideTrainStream(small_pictures=a.small_pictures)
items = V.heldout_wide('valw')[:200]
# Diagnostic pictures drawn like the shifted split (outer ranges) from their own seed, those with a short side
# under 48 px: where small objects are 2-4 px across. Shape accuracy on their occupied cells, by short side.
diag = [(s_, st_) for s_, st_ in (V.scene_and_style_from(V.rng_for(7007, i), True) for i in range(400))
        if min(st_.width, st_.height) < 48]
dpix = torch.stack([V.to_model_pixels(V.render_wide(s_, st_), cfg.vision_config, torch.float32)[0] for s_, st_ in diag])
dcells = torch.stack([T.cell_labels(s_) for s_, _ in diag])
dshort = torch.tensor([min(st_.width, st_.height) for _, st_ in diag])
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
        Vd = m.encode_image(dpix)
        dl = dcells[:, aux.cell_of_patch]
        pred = aux.heads[1](Vd).argmax(-1)  # shape, on the diagnostic small pictures
        for b, sel in {'short<30': dshort < 30, 'short30-47': dshort >= 30}.items():
            occ = (dl[..., 1] > 0) & sel[:, None]
            out[f'small_pictures_shape_{b}'] = f'{int((pred == dl[..., 1])[occ].sum())}/{int(occ.sum())}'
        return out
for step in range(a.steps):
    lr = a.lr * min(1.0, (step + 1) / 50)
    if a.cosine and step >= 50:
        lr = a.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - 50) / max(1, a.steps - 50))))
    for g in opt.param_groups:
        g['lr'] = lr
    imgs, cells = [], []
    for j in range(a.batch):
        s, st = stream.scene_and_style(step * a.batch + j)
        imgs.append(V.to_model_pixels(V.render_wide(s, st), cfg.vision_config, torch.float32)[0])
        cells.append(T.cell_labels(s))
    Vt = m.encode_image(torch.stack(imgs))
    loss = aux(Vt, torch.stack(cells))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
        print(json.dumps({'patch': a.patch, 'step': step + 1, 'loss': round(float(loss), 4), 'val': evaluate(), 'time': round(time.time() - t0, 1)}), flush=True)
if a.save:
    keep = {k: v for k, v in m.state_dict().items() if k.startswith(('vision_model.', 'lavi.projector.'))}
    keep.update({'aux.' + k: v for k, v in aux.state_dict().items()})
    torch.save(keep, a.save)
    print('wrote', a.save, len(keep), 'tensors')
