"""Trains the small VQA checkpoints from scratch on CPU: a LaVi model (vision through ViLN) and the LLaVA-style
concat baseline with the same vision tower, projector and decoder, on the same synthetic data
(models/reference/vqa_data.py) and the same byte-level BPE tokenizer (models/reference/bpe_tokenizer.py).

  train    one run; logs and float32 checkpoints go to --run-dir (outside the repository)
  export   rounds a run's final checkpoint to float16 and writes config.json + model.safetensors +
           tokenizer.json, the layout the TypeScript engine loads

Every run is a function of --seed: the initial weights come from torch.manual_seed(seed), and the training data
stream is indexed by step (image i of the stream is vqa_data.TrainStream().sample(i, ...)), so a run can be
repeated exactly on the same machine. Both the vision tower and the decoder are trained jointly from random
initialisation (no pretrained weights exist for this tokenizer or world).

Batches: each step draws `--images` images and asks `--questions-per-image` questions of different types about
each, so every image is encoded once per step. Sequences are right-padded within two length groups (descriptions
and short answers) to avoid padding the short ones to description length. The loss is the mean next-token
cross-entropy over the answer tokens and the closing <|im_end|>.

See models/reference/TRAINING.md for the exact commands and the results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import vqa_data  # noqa: E402
from bpe_tokenizer import CHAT_TEMPLATE, Tokenizer, encode_example  # noqa: E402
from lavi_torch import (  # noqa: E402
    LaviConfig, LaviForConditionalGeneration, ModelConfig, TextConfig, VideoConfig, VisionConfig, preprocess_rgb8,
)

ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))

# =============================================================================================================
# Model
# =============================================================================================================


def check_image_size(ap: argparse.ArgumentParser, image_size: Optional[int], patch: int) -> None:
    """The input must be a whole number of patches across (the probes map each patch's token to its cell)."""
    size = vqa_data.IMAGE_SIZE if image_size is None else image_size
    if size < 1 or patch < 1 or size % patch:
        ap.error(f'--image-size {size} with --patch {patch}: the input must be a whole number of patches across')


def build_config(a, vocab_size: int, eos: List[int]) -> ModelConfig:
    vc = VisionConfig(
        image_size=int(getattr(a, 'image_size', None) or vqa_data.IMAGE_SIZE), patch_size=a.patch, num_channels=3, hidden_size=a.vit_width,
        num_hidden_layers=a.vit_layers, num_attention_heads=a.vit_heads, intermediate_size=4 * a.vit_width,
        layer_norm_eps=1e-6, hidden_act='gelu_pytorch_tanh', use_post_layernorm=False,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        stem_channels=[int(c) for c in str(getattr(a, 'stem', '') or '').split(',') if c],
        resample=getattr(a, 'resample', None))
    tc = TextConfig(
        vocab_size=vocab_size, hidden_size=a.d, intermediate_size=a.ffn, num_hidden_layers=a.layers,
        num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, rms_norm_eps=1e-6, rope_theta=10000.0,
        max_position_embeddings=256, tie_word_embeddings=True, attention_bias=True)
    lc = LaviConfig(mode=a.mode, viln_norms=str(getattr(a, 'viln_norms', 'input_layernorm,post_attention_layernorm')).split(','),
                    every_k=int(getattr(a, 'every_k', 1)),
                    modulate_final_norm=a.modulate_final_norm, modulate=getattr(a, 'modulate', 'both'), conditioner_width=a.cond_r,
                    conditioner_heads=a.cond_heads, conditioner_ln_v=True, conditioner_ln_eps=1e-6,
                    conditioner_bias=True, kv_dtype=getattr(a, 'kv_dtype', 'f32'),
                    shared_visual_kv=bool(getattr(a, 'shared_kv', False)),
                    conditioner_per_layer=bool(getattr(a, 'per_layer', False)))
    # image-only checkpoints: no frame embedding table (video would run without one)
    video = VideoConfig(num_frames=8, pool=2, frame_embedding=False, max_frames=64)
    return ModelConfig(vc, tc, lc, video, bos_token_id=None, eos_token_ids=eos)


def count_params(m: torch.nn.Module) -> Dict[str, int]:
    parts = {'vision_model': 0, 'projector': 0, 'conditioners': 0, 'llm': 0}
    for n, p in m.named_parameters():
        if n.startswith('vision_model.'):
            parts['vision_model'] += p.numel()
        elif n.startswith('lavi.projector.'):
            parts['projector'] += p.numel()
        elif n.startswith('lavi.conditioners.'):
            parts['conditioners'] += p.numel()
        else:
            parts['llm'] += p.numel()
    parts['total'] = sum(parts.values())
    return parts


# =============================================================================================================
# Data
# =============================================================================================================


class Batcher:
    """Deterministic batches: step s uses stream images s*n .. s*n+n-1. data='fixed' is the original 48 x 48
    stream (six types); 'wide' the widened task of issue 18 (vqa_data.WideTrainStream: varied pictures resized
    as the engine resizes them, several phrasings, out-of-task questions as a seventh type 'oot')."""

    def __init__(self, tok: Tokenizer, n_images: int, q_per_image: int, type_weights: Dict[str, float],
                 seed: int, attr_pref: float = 0.0, data: str = 'fixed', small_pictures: float = 0.0):
        self.tok = tok
        self.n_images = n_images
        self.q = q_per_image
        self.data = data
        self.stream = vqa_data.WideTrainStream(small_pictures=small_pictures) if data == 'wide' else vqa_data.TrainStream()
        self.types = list(vqa_data.TRAIN_TYPES if data == 'wide' else vqa_data.QUESTION_TYPES)
        w = np.asarray([type_weights.get(t, 0.0) for t in self.types], dtype=np.float64)
        self.p = w / w.sum()
        self.seed = seed
        self.attr_pref = attr_pref

    def batch(self, step: int, vc: VisionConfig):
        rng = vqa_data.rng_for(self.seed + 555, step)
        imgs, seqs, cells = [], [], []
        for j in range(self.n_images):
            idx = step * self.n_images + j
            types = [self.types[k] for k in rng.choice(len(self.types), size=self.q, replace=False, p=self.p)]
            if self.data == 'wide':
                img, qs, scene = self.stream.sample(idx, types, self.attr_pref)
                imgs.append(vqa_data.to_model_pixels(img, vc, torch.float32)[0])
            else:
                img, qs = self.stream.sample(idx, types, self.attr_pref)
                scene = self.stream.scene(idx)
                imgs.append(preprocess_rgb8(torch.from_numpy(img), vc, torch.float32)[0])
            cells.append(cell_labels(scene))
            for q in qs:
                ids, lab = encode_example(self.tok, q.question, q.answer)
                seqs.append((j, ids, lab, q.type, q.cell))
        return torch.stack(imgs), seqs, torch.stack(cells)


def cell_labels(scene) -> torch.Tensor:
    """[9, 3] class of (colour, shape, size) of the object in each grid cell; 0 = empty cell."""
    lab = torch.zeros(9, 3, dtype=torch.long)
    for o in scene:
        lab[o.cell] = torch.tensor([1 + vqa_data.COLOR_NAMES.index(o.color), 1 + vqa_data.SHAPES.index(o.shape),
                                    1 + vqa_data.SIZES.index(o.size)])
    return lab


class AuxHeads(torch.nn.Module):
    """Training-only linear probes on the projected visual tokens V: each token predicts the colour, shape and
    size of the object in its grid cell (or 'empty'), and which cell it lies in. They stand in for the pretraining a real vision tower
    would have had (SigLIP), giving V attribute-aligned directions early; they are not part of the checkpoint."""

    def __init__(self, d: int, grid: int, pooled: bool = False):
        super().__init__()
        if grid % 3:
            raise ValueError('auxiliary cell labels need a patch grid that is a multiple of 3')
        self.grid = grid
        self.heads = torch.nn.ModuleList([torch.nn.Linear(d, 1 + len(vqa_data.COLOR_NAMES)),
                                          torch.nn.Linear(d, 1 + len(vqa_data.SHAPES)),
                                          torch.nn.Linear(d, 1 + len(vqa_data.SIZES)),
                                          torch.nn.Linear(d, 9)])  # which cell the token lies in
        # optional: the mean of all visual tokens predicts every cell's attributes (a whole-scene summary)
        self.pooled = torch.nn.ModuleList([torch.nn.Linear(d, 9 * h.out_features) for h in self.heads[:3]]) \
            if pooled else None
        g = grid
        self.register_buffer('cell_of_patch', torch.tensor([(r * 3 // g) * 3 + c * 3 // g
                                                            for r in range(g) for c in range(g)]), persistent=False)

    def forward(self, V: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        lab = cells[:, self.cell_of_patch]  # [B, N, 3]
        where = self.cell_of_patch[None].expand(V.shape[0], -1)
        loss = 0.0
        for k, h in enumerate(self.heads):
            logits = h(V)
            target = lab[..., k] if k < 3 else where
            loss = loss + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        if self.pooled is not None:
            m = V.mean(1)
            for k, h in enumerate(self.pooled):
                logits = h(m).view(V.shape[0], 9, -1)
                loss = loss + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), cells[..., k].reshape(-1))
        return loss / len(self.heads)


def collate(seqs, pad_id: int):
    """Right-padded [B, T] ids, labels, mask, image indices."""
    T = max(len(s[1]) for s in seqs)
    B = len(seqs)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    lab = torch.full((B, T), -100, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    img = torch.tensor([s[0] for s in seqs], dtype=torch.long)
    for b, s in enumerate(seqs):
        n = len(s[1])
        ids[b, :n] = torch.tensor(s[1])
        lab[b, :n] = torch.tensor(s[2])
        mask[b, :n] = 1
    return ids, lab, mask, img


def groups_of(seqs, split_len: int = 24):
    """Short and long sequences (descriptions) as separate padded groups."""
    short = [s for s in seqs if len(s[1]) <= split_len]
    long = [s for s in seqs if len(s[1]) > split_len]
    return [g for g in (short, long) if g]


class ReferentProbe(torch.nn.Module):
    """Training-only: at the last prompt position (where the first answer token is predicted), linear probes on
    the residual stream after some decoder layers predict the grid cell of the object the question is about
    (questions that name exactly one object). It supervises the hard step of these questions directly: carrying
    the question's words to the answer position and looking up the matching visual token. Not in the checkpoint."""

    def __init__(self, d: int, layers: List[int]):
        super().__init__()
        self.layers = layers
        self.heads = torch.nn.ModuleList([torch.nn.Linear(d, 9) for _ in layers])

    def forward(self, hidden_states, n_prefix: int, lab: torch.Tensor, cells: torch.Tensor) -> Tuple[torch.Tensor, int]:
        keep = cells >= 0
        if not bool(keep.any()):
            return torch.zeros(()), 0
        first = (lab != -100).float().argmax(-1)  # first answer token; the prompt's last position is one before
        pos = n_prefix + first - 1
        rows = torch.arange(lab.shape[0])
        loss = 0.0
        for k, h in zip(self.layers, self.heads):
            x = hidden_states[k][rows, pos][keep]
            loss = loss + F.cross_entropy(h(x), cells[keep], reduction='sum')
        return loss / len(self.layers), int(keep.sum())


def batch_loss(model, V: torch.Tensor, seqs, pad_id: int, power: float = 0.0, probe: Optional[ReferentProbe] = None):
    """Weighted sum of answer-token cross-entropies over the groups, and the sum of the weights. A sequence with
    n answer tokens weighs n^-power per token: 0 is the plain token mean (long descriptions then dominate the
    gradient), 1 the mean over sequences of each sequence's token mean. With a probe, also the mean referent-probe
    loss (0 when no question names an object)."""
    total, norm = 0.0, 0.0
    ref_sum, ref_n = 0.0, 0
    for g in groups_of(seqs):
        ids, lab, mask, img = collate(g, pad_id)
        out = model(ids, visual_tokens=V[img], attention_mask=mask, output_hidden_states=probe is not None)
        if probe is not None:
            cells = torch.tensor([s[4] for s in g], dtype=torch.long)
            l, n = probe(out['hidden_states'], out['n_prefix'], lab, cells)
            ref_sum, ref_n = ref_sum + l, ref_n + n
        logits = out['text_logits'][:, :-1]
        tgt = lab[:, 1:]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                             reduction='none').view(tgt.shape)
        n = (tgt != -100).sum(-1).clamp(min=1).to(ce.dtype)
        w = n.pow(-power)
        total = total + (ce.sum(-1) * w).sum()
        norm += float((n * w).sum())
    if probe is None:
        return total, norm
    return total, norm, (ref_sum / ref_n if ref_n else torch.zeros(()))


# =============================================================================================================
# Validation: teacher-forced exact match (equal to greedy exact match: greedy reproduces the answer iff every
# answer position's argmax is the answer token)
# =============================================================================================================


def val_set(tok: Tokenizer, vc: VisionConfig, n_questions: int, data: str = 'fixed'):
    """Validation images and questions. 'fixed': the original validation split. 'wide': the widened validation
    split (vqa_data 'valw', types prefixed 'w_'), then the original one (types prefixed 'o_', half as many),
    then 60 out-of-task questions drawn like training's (type 'oot')."""
    if data == 'fixed':
        scenes = vqa_data.heldout_scenes('val')
        pix = torch.stack([preprocess_rgb8(torch.from_numpy(vqa_data.render(s)), vc, torch.float32)[0] for s in scenes])
        seqs = []
        for i, q in vqa_data.heldout_questions('val')[:n_questions]:
            ids, lab = encode_example(tok, q.question, q.answer)
            seqs.append((i, ids, lab, q.type, q.cell))
        return pix, seqs
    items = vqa_data.heldout_wide('valw')
    pix = [vqa_data.to_model_pixels(vqa_data.render_wide(s, st), vc, torch.float32)[0] for s, st in items]
    seqs = []
    for i, q in vqa_data.heldout_wide_questions('valw')[:n_questions]:
        ids, lab = encode_example(tok, q.question, q.answer)
        seqs.append((i, ids, lab, 'w_' + q.type, q.cell))
    base = len(pix)
    scenes = vqa_data.heldout_scenes('val')
    # the original split's 48 x 48 pictures, resized as inference does for a model input of another size
    pix += [preprocess_rgb8(torch.from_numpy(vqa_data.render(s)), vc, torch.float32)[0] if vc.image_size == vqa_data.IMAGE_SIZE
            else vqa_data.to_model_pixels(vqa_data.render(s), vc, torch.float32)[0] for s in scenes]
    for i, q in vqa_data.heldout_questions('val')[:n_questions // 2]:
        ids, lab = encode_example(tok, q.question, q.answer)
        seqs.append((base + i, ids, lab, 'o_' + q.type, q.cell))
    rng = vqa_data.rng_for(vqa_data.SPLIT_SEEDS['valw'] + 1, 0)
    for k in range(60):
        q = vqa_data.sample_oot(rng)
        ids, lab = encode_example(tok, q.question, q.answer)
        seqs.append((k, ids, lab, 'oot', -1))
    return torch.stack(pix), seqs


@torch.no_grad()
def evaluate(model, pix, seqs, pad_id: int, chunk: int = 128) -> Dict[str, float]:
    model.eval()
    used = sorted({s[0] for s in seqs})
    V = model.encode_image(pix[used])
    remap = {i: k for k, i in enumerate(used)}
    seqs = [(remap[s[0]],) + tuple(s[1:]) for s in seqs]
    right: Dict[str, List[int]] = {}
    loss_sum, n_tok = 0.0, 0
    for k in range(0, len(seqs), chunk):
        part = seqs[k:k + chunk]
        for g in groups_of(part):
            ids, lab, mask, img = collate(g, pad_id)
            out = model(ids, visual_tokens=V[img], attention_mask=mask)
            logits = out['text_logits'][:, :-1]
            tgt = lab[:, 1:]
            loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                              ignore_index=-100, reduction='sum'))
            n_tok += int((tgt != -100).sum())
            ok = ((logits.argmax(-1) == tgt) | (tgt == -100)).all(-1)
            for s, o in zip(g, ok.tolist()):
                right.setdefault(s[3], []).append(int(o))
    model.train()
    res = {t: float(np.mean(v)) for t, v in right.items()}
    res['overall'] = float(np.mean([x for v in right.values() for x in v]))
    for pre in ('w_', 'o_'):
        sub = [x for t, v in right.items() if t.startswith(pre) for x in v]
        if sub:
            res[pre + 'overall'] = float(np.mean(sub))
    res['loss'] = loss_sum / max(n_tok, 1)
    return res


# =============================================================================================================
# Training
# =============================================================================================================


def lr_at(step: int, a) -> float:
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train(a) -> None:
    torch.set_num_threads(a.threads)
    os.makedirs(a.run_dir, exist_ok=True)
    tok = Tokenizer.load(a.tokenizer)
    eos = [tok.token_id('<|im_end|>'), tok.token_id('<|endoftext|>')]
    pad_id = tok.token_id('<|endoftext|>')
    cfg = build_config(a, tok.vocab_size, eos)
    torch.manual_seed(a.seed)
    model = LaviForConditionalGeneration(cfg)
    model.init_weights(std=0.02, zero_o_proj=a.o_proj_init == 0)
    if a.o_proj_init > 0:
        # Trained from scratch there is no base LLM to preserve, so the conditioners' o_proj may start non-zero
        # (the spec's zero init is for adding ViLN to a pretrained LLM); this lets gradients reach the
        # conditioners' q/k/v and the vision tower from the first step.
        with torch.no_grad():
            for c in model.lavi.all_conditioners():
                c.o_proj.weight.normal_(0.0, a.o_proj_init)
    params = count_params(model)
    aux = AuxHeads(cfg.text_config.hidden_size, cfg.vision_config.grid, a.aux_pooled) if a.aux_weight > 0 else None
    probe = ReferentProbe(cfg.text_config.hidden_size, [int(x) for x in a.ref_layers.split(',')]) \
        if a.ref_weight > 0 else None
    if a.init_vision_from:
        # the tower, projector and cell probes pretrained alone (vision_probe.py --save): the stand-in for a real
        # pretrained SigLIP; the LLM (and LaVi's conditioners) start from scratch
        vs = torch.load(a.init_vision_from, map_location='cpu')
        own = model.state_dict()
        bad = [k for k in vs if not k.startswith('aux.') and (k not in own or own[k].shape != vs[k].shape)]
        if bad:
            raise ValueError(f'--init-vision-from {a.init_vision_from}: tensors that do not fit this model: {bad[:4]}')
        model.load_state_dict({k: v for k, v in vs.items() if not k.startswith('aux.')}, strict=False)
        if aux is not None:
            aux.load_state_dict({k[4:]: v for k, v in vs.items() if k.startswith('aux.')})
    if a.init_llm_from:
        # a new tower (--init-vision-from) under an LLM trained before: every tensor of that run's checkpoint but
        # its tower and projector (the projector stays the one pretrained with the new tower)
        ck = torch.load(a.init_llm_from, map_location='cpu')
        own = model.state_dict()
        take = {k: v for k, v in ck['state_dict'].items() if not k.startswith(('vision_model.', 'lavi.projector.'))}
        bad = [k for k, v in take.items() if k not in own or own[k].shape != v.shape]
        if bad:
            raise ValueError(f'--init-llm-from {a.init_llm_from}: tensors that do not fit this model: {bad[:4]}')
        model.load_state_dict(take, strict=False)
    if a.init_from:
        # a second phase: continue from another run's weights (same architecture) on images it has not seen
        ck = torch.load(a.init_from, map_location='cpu')
        model.load_state_dict(ck['state_dict'])
        if aux is not None and ck.get('aux_state_dict'):
            aux.load_state_dict(ck['aux_state_dict'])
    groups = []
    for vis in (False, True):  # vision side (tower, projector, conditioners) may get its own lr multiplier
        for dec in (True, False):
            named = list(model.named_parameters()) + (list(aux.named_parameters('aux.')) if aux else []) + \
                (list(probe.named_parameters('probe.')) if probe else [])
            ps = [p for n, p in named if (p.dim() >= 2) == dec and (not n.startswith('model.')) == vis]
            if ps:
                groups.append({'params': ps, 'weight_decay': a.wd if dec else 0.0,
                               'lr_mult': a.vision_lr_mult if vis else 1.0})
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.98), eps=1e-8)
    type_w = dict(zip(vqa_data.TRAIN_TYPES, [float(x) for x in a.type_weights.split(',')]))
    batcher = Batcher(tok, a.images, a.questions_per_image, type_w, a.seed, a.attr_pref, a.data, a.small_pictures)
    vpix, vseqs = val_set(tok, cfg.vision_config, a.val_questions, a.data)
    log_path = os.path.join(a.run_dir, 'log.jsonl')
    logf = open(log_path, 'a')

    def log(rec):
        rec['time'] = round(time.time() - t0, 1)
        logf.write(json.dumps(rec) + '\n')
        logf.flush()
        print(json.dumps(rec), flush=True)

    t0 = time.time()
    log({'event': 'start', 'args': vars(a), 'params': params, 'vocab_size': tok.vocab_size})
    model.train()
    ema = None
    last = a.steps if a.stop_after is None else min(a.steps, a.stop_after)
    for step in range(last):
        lr = lr_at(step, a)
        for g in opt.param_groups:
            g['lr'] = lr * g['lr_mult']
        pix, seqs, cells = batcher.batch(step + a.data_offset, cfg.vision_config)
        V = model.encode_image(pix)
        if probe is not None:
            total, norm, ref_loss = batch_loss(model, V, seqs, pad_id, a.seq_weight_power, probe)
        else:
            (total, norm), ref_loss = batch_loss(model, V, seqs, pad_id, a.seq_weight_power), torch.zeros(())
        loss = total / norm
        aux_loss = aux(V, cells) if aux is not None else torch.zeros(())
        full = loss + a.aux_weight * aux_loss + a.ref_weight * ref_loss
        opt.zero_grad(set_to_none=True)
        full.backward()
        gn = torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g['params']], a.clip)
        opt.step()
        ema = float(loss) if ema is None else 0.95 * ema + 0.05 * float(loss)
        if step % a.log_every == 0 or step == a.steps - 1:
            log({'step': step, 'loss': round(float(loss), 4), 'aux': round(float(aux_loss), 4), 'ref': round(float(ref_loss), 4), 'ema': round(ema, 4), 'lr': round(lr, 6),
                 'grad_norm': round(float(gn), 3)})
        if (step + 1) % a.eval_every == 0 or step == last - 1:
            res = evaluate(model, vpix, vseqs, pad_id)
            log({'step': step + 1, 'val': {k: round(v, 4) for k, v in res.items()}})
            ck = {'config': cfg.to_dict(), 'state_dict': model.state_dict(), 'step': step + 1,
                  'aux_state_dict': aux.state_dict() if aux else None}
            torch.save(ck, os.path.join(a.run_dir, 'checkpoint.pt'))
            if a.keep_checkpoints:  # every evaluation's weights, so an intermediate one can be exported
                torch.save(ck, os.path.join(a.run_dir, f'checkpoint-{step + 1:05d}.pt'))
    log({'event': 'done', 'train_seconds': round(time.time() - t0, 1)})


# =============================================================================================================
# Export
# =============================================================================================================


def export(a) -> None:
    ck = torch.load(a.checkpoint or os.path.join(a.run_dir, 'checkpoint.pt'), map_location='cpu')
    cfg = ModelConfig.from_dict(ck['config'])
    model = LaviForConditionalGeneration(cfg)
    model.load_state_dict(ck['state_dict'])
    if a.resample is not None:  # the resize inference uses (vision_config.resample), whatever training read
        model.config.vision_config.resample = a.resample
    big = max(float(p.abs().max()) for p in model.parameters())
    if big >= 65504:
        raise SystemExit(f'a weight of magnitude {big} does not fit float16')
    meta = {'trained_by': 'models/reference/train_vqa.py', 'steps': str(ck['step']),
            'data': 'models/reference/vqa_data.py'}
    model.save_pretrained(a.out, torch.float16, metadata=meta)
    path = os.path.join(a.out, 'config.json')
    with open(path) as f:
        j = json.load(f)
    j['chat_template'] = CHAT_TEMPLATE
    with open(path, 'w') as f:
        json.dump(j, f, indent=2)
        f.write('\n')
    shutil.copyfile(a.tokenizer, os.path.join(a.out, 'tokenizer.json'))
    print(f'exported {a.out} ({cfg.lavi_config.mode}, step {ck["step"]}, max |w| {big:.3f})')


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    t = sub.add_parser('train')
    t.add_argument('--mode', choices=['lavi', 'concat'], required=True)
    t.add_argument('--run-dir', required=True)
    t.add_argument('--tokenizer', required=True)
    t.add_argument('--seed', type=int, default=0)
    t.add_argument('--steps', type=int, default=3000)
    t.add_argument('--images', type=int, default=32, help='images per step')
    t.add_argument('--questions-per-image', type=int, default=2)
    t.add_argument('--type-weights', default='1,1,1,1,1,1,0',
                   help='sampling weights of ' + ','.join(vqa_data.TRAIN_TYPES) + ' (oot: --data wide only)')
    t.add_argument('--data', choices=['fixed', 'wide'], default='fixed',
                   help='fixed: the original 48 x 48 stream; wide: the widened task of issue 18')
    t.add_argument('--keep-checkpoints', action='store_true', help='also keep checkpoint-STEP.pt at every evaluation')
    t.add_argument('--seq-weight-power', type=float, default=0.0,
                   help='per-token loss weight n^-p for a sequence with n answer tokens (0: token mean)')
    t.add_argument('--attr-pref', type=float, default=0.0,
                   help='probability that a colour/shape question names its object by attributes, not position')
    t.add_argument('--lr', type=float, default=1e-3)
    t.add_argument('--min-lr-frac', type=float, default=0.05)
    t.add_argument('--warmup', type=int, default=200)
    t.add_argument('--wd', type=float, default=0.05)
    t.add_argument('--clip', type=float, default=1.0)
    t.add_argument('--patch', type=int, default=8)
    t.add_argument('--vit-width', type=int, default=128)
    t.add_argument('--vit-layers', type=int, default=3)
    t.add_argument('--vit-heads', type=int, default=4)
    t.add_argument('--d', type=int, default=192)
    t.add_argument('--ffn', type=int, default=512)
    t.add_argument('--layers', type=int, default=4)
    t.add_argument('--heads', type=int, default=4)
    t.add_argument('--kv-heads', type=int, default=2)
    t.add_argument('--cond-r', type=int, default=64)
    t.add_argument('--modulate-final-norm', action='store_true', help='LaVi: a ViLN conditioner on model.norm too')
    t.add_argument('--cond-heads', type=int, default=4)
    # the conditioner design axes of the efficiency issue (models/COST.md): which norms, how often, K/U storage, sharing
    t.add_argument('--viln-norms', default='input_layernorm,post_attention_layernorm',
                   help='LaVi: the modulated norms of a modulated layer (comma list)')
    t.add_argument('--every-k', type=int, default=1, help='LaVi: modulate layers 0, k, 2k, ...')
    t.add_argument('--kv-dtype', choices=['f32', 'bf16', 'f16'], default='f32', help='LaVi: storage of K/U')
    t.add_argument('--shared-kv', action='store_true', help='LaVi: one LN_v/k_proj/v_proj for every site')
    t.add_argument('--per-layer', action='store_true',
                   help='LaVi: one conditioner per layer for both its norms (lavi_config.conditioner_per_layer)')
    t.add_argument('--modulate', choices=['both', 'scale', 'shift'], default='both',
                   help='LaVi: which affine parameters the conditioners modulate (scale: only gamma, o_proj r -> d)')
    t.add_argument('--o-proj-init', type=float, default=0.0,
                   help='std of the conditioners\' o_proj at init (0: zero, as the spec does for a pretrained LLM)')
    t.add_argument('--vision-lr-mult', type=float, default=1.0,
                   help='lr multiplier of the vision tower, projector and conditioners')
    t.add_argument('--aux-weight', type=float, default=0.0,
                   help='weight of the training-only per-cell attribute loss on the visual tokens (0: off)')
    t.add_argument('--ref-weight', type=float, default=0.0,
                   help='weight of the training-only referent probe (the cell of the object a question names, '
                        'predicted at the answer position; 0: off)')
    t.add_argument('--ref-layers', default='2,3',
                   help='hidden-state indices (HF convention: k = output of layer k-1) the referent probe reads')
    t.add_argument('--aux-pooled', action='store_true',
                   help='auxiliary: the mean visual token also predicts every cell\'s attributes')
    t.add_argument('--stem', default='', help='conv stem channels of the vision tower, e.g. 32,64,128 (default none)')
    t.add_argument('--resample', type=int, choices=[1, 2, 3, 4, 5], default=None,
                   help='resize pictures to the model input with this PIL filter (3: bicubic), as vision_config.resample; '
                        'default: bilinear without antialiasing, as the shipped checkpoints')
    t.add_argument('--small-pictures', type=float, default=0.0,
                   help="with --data wide: the share of training pictures whose long side is 24..47 px "
                        "(vqa_data.random_style; default 0: the stream's log-uniform sizes alone)")
    t.add_argument('--init-vision-from', default=None, help='tower + projector (+ cell probes) from vision_probe.py --save')
    t.add_argument('--image-size', type=int, default=None,
                   help='the model input in px (default vqa_data.IMAGE_SIZE, 48), a multiple of --patch')
    t.add_argument('--init-llm-from', default=None,
                   help="a checkpoint.pt whose tensors other than the tower's and projector's start this run "
                        '(with --init-vision-from: a new tower under a trained LLM)')
    t.add_argument('--init-from', default=None, help='checkpoint.pt of an earlier run to start from')
    t.add_argument('--stop-after', type=int, default=None,
                   help='stop after this many steps of the --steps schedule (a first phase; see TRAINING.md)')
    t.add_argument('--data-offset', type=int, default=0,
                   help='first batch index of the data stream (a continuation uses images the first phase did not)')
    t.add_argument('--threads', type=int, default=2)
    t.add_argument('--log-every', type=int, default=25)
    t.add_argument('--eval-every', type=int, default=250)
    t.add_argument('--val-questions', type=int, default=600, help='validation questions scored at each evaluation')
    e = sub.add_parser('export')
    e.add_argument('--run-dir', required=True)
    e.add_argument('--tokenizer', required=True)
    e.add_argument('--out', required=True)
    e.add_argument('--checkpoint', default=None, help='a checkpoint-STEP.pt (default: the run\'s last checkpoint.pt)')
    e.add_argument('--resample', type=int, choices=[1, 2, 3, 4, 5], default=None,
                   help='write this PIL filter as vision_config.resample (the resize inference uses; default: '
                        'what the run trained with)')
    a = ap.parse_args(argv)
    if a.cmd == 'train':
        check_image_size(ap, a.image_size, a.patch)
    if a.cmd == 'train':
        train(a)
    else:
        export(a)


if __name__ == '__main__':
    main()
