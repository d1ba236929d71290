"""Evaluates the shipped VQA checkpoints in PyTorch and writes the logits golden for the TypeScript engine.

  eval     every question of the three held-out sets, for each checkpoint directory given: the original split
           (examples/vqa/test -> models/weights/eval-pytorch.json), the shifted split (examples/vqa/shifted ->
           eval-pytorch-shifted.json) and the out-of-task questions (examples/vqa/oot -> eval-pytorch-oot.json;
           their types are the question categories). Greedy decoding (max 64 new tokens, stops at <|im_end|> or
           <|endoftext|>) from the PNG image, resized to the model's input as the engine does (bilinear,
           half-pixel centres, no antialiasing; vqa_data.to_model_pixels), exact match after trimming,
           lowercasing and dropping one final period; per question type and overall. The JPEG copies are scored
           the same way as a secondary result. Each file holds every question's predicted answer and token ids,
           and the number of answers with text outside the task's vocabulary (vqa_data: colours, shapes, sizes,
           cells, numbers, yes/no, the description's words, or exactly the out-of-task sentence).
           --questions FILE --out FILE evaluates one other questions file instead.
  golden   test/fixtures/vqa/logits-golden.safetensors: for 5 held-out questions (3 of the original split, one of
           the shifted split on a picture that is not 48 x 48, one out-of-task question), the prompt ids, the
           image, the pixel values fed to the model, the prompt logits, and the greedy answer ids, from the
           shipped (float16) LaVi weights, computed in float64.

The checkpoints are evaluated exactly as shipped: the float16 weights are widened (exactly) to float64 and the
whole graph runs in float64.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bpe_tokenizer import Tokenizer, prompt_text  # noqa: E402
from lavi_torch import (  # noqa: E402
    LaviForConditionalGeneration, load_safetensors, preprocess_rgb8, save_safetensors,
)
import vqa_data  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
MAX_NEW_TOKENS = 64  # the longest description (4 objects) is about 40 tokens


def normalize_answer(s: str) -> str:
    s = s.strip().lower()
    if s.endswith('.'):
        s = s[:-1]
    return s.strip()


def load_questions(path: str) -> List[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Runner:
    def __init__(self, model_dir: str, dtype=torch.float64):
        self.dir = model_dir
        self.dtype = dtype
        self.model = LaviForConditionalGeneration.from_pretrained(model_dir, dtype).eval()
        self.tok = Tokenizer.load(os.path.join(model_dir, 'tokenizer.json'))
        with open(os.path.join(model_dir, 'config.json')) as f:
            self.template = json.load(f)['chat_template']
        self.cfg = self.model.config
        tensors = load_safetensors(os.path.join(model_dir, 'model.safetensors'))
        self.weights_dtypes = sorted({str(t.dtype).replace('torch.', '') for t in tensors.values()})
        self.n_params = int(sum(t.numel() for t in tensors.values()))
        self.bytes = os.path.getsize(os.path.join(model_dir, 'model.safetensors'))

    def prompt_ids(self, question: str) -> List[int]:
        text = self.template.replace('{question}', question)
        assert text == prompt_text(question)
        return self.tok.encode(text)

    def pixels(self, path: str) -> torch.Tensor:
        return vqa_data.to_model_pixels(vqa_data.load_image(path), self.cfg.vision_config, self.dtype)

    @torch.no_grad()
    def answer(self, question: str, pixel_values: torch.Tensor):
        ids = torch.tensor([self.prompt_ids(question)], dtype=torch.long)
        toks, margins = self.model.generate_greedy(ids, pixel_values=pixel_values, max_new_tokens=MAX_NEW_TOKENS,
                                                   stop_at_eos=True)
        eos = set(self.cfg.eos_token_ids)
        body = toks[:-1] if toks and toks[-1] in eos else toks
        return self.tok.decode(body), toks, margins


SETS = {'test': 'eval-pytorch.json', 'shifted': 'eval-pytorch-shifted.json', 'oot': 'eval-pytorch-oot.json'}


def types_of(rows: List[dict]) -> List[str]:
    seen = []
    for x in rows:
        if x['type'] not in seen:
            seen.append(x['type'])
    return [t for t in vqa_data.QUESTION_TYPES if t in seen] + sorted(t for t in seen if t not in vqa_data.QUESTION_TYPES)


def accuracy_table(rows: List[dict], key: str) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for t in types_of(rows):
        r = [x[key] for x in rows if x['type'] == t]
        if r:
            out[t] = round(float(np.mean(r)), 4)
    out['overall'] = round(float(np.mean([x[key] for x in rows])), 4)
    return out


def run_eval(a) -> None:
    if a.questions is None:
        for name in a.sets.split(','):
            a1 = argparse.Namespace(**vars(a))
            a1.questions = os.path.join(ROOT, 'examples', 'vqa', name, 'questions.jsonl')
            a1.out = os.path.join(a.out_dir, SETS[name])
            run_eval(a1)
        return
    if a.out is None:
        raise SystemExit('--questions needs --out')
    torch.set_num_threads(a.threads)
    qs = load_questions(a.questions)
    qdir = os.path.dirname(os.path.abspath(a.questions))
    result = {
        'format': 'lavi-vqa-eval/1',
        'generator': 'models/reference/eval_vqa.py eval',
        'questions': os.path.relpath(os.path.abspath(a.questions), ROOT),
        'n_questions': len(qs),
        'decoding': {'strategy': 'greedy', 'max_new_tokens': MAX_NEW_TOKENS,
                     'stop': 'first token in eos_token_ids (<|im_end|>, <|im_end|> first); the stop token is not '
                             'part of the answer text', 'image': 'the PNG (field "image"); "jpeg" results use the '
                             'JPEG copy'},
        'scoring': 'exact match after trimming whitespace, lowercasing and dropping one final period',
        'image_input': 'resized to the model input as the engine does: bilinear (half-pixel centres, no antialiasing), '
                       'or PIL Image.resize with the filter vision_config.resample names when a checkpoint sets it',
        'out_of_vocabulary': 'answers with a word outside the task vocabulary (vqa_data.in_task_vocabulary)',
        'compute': 'float64 from the shipped float16 weights (widened exactly)',
        'models': {},
    }
    for d in a.models:
        t0 = time.time()
        r = Runner(d)
        name = os.path.basename(os.path.normpath(d))
        rows = []
        for i, q in enumerate(qs):
            row = {'index': i, 'image': q['image'], 'question': q['question'], 'answer': q['answer'],
                   'type': q['type']}
            for src in ('png', 'jpeg'):
                img = q['image'] if src == 'png' else q['jpeg']
                text, toks, margins = r.answer(q['question'], r.pixels(os.path.join(qdir, img)))
                ok = normalize_answer(text) == normalize_answer(q['answer'])
                oov = not vqa_data.in_task_vocabulary(text)
                if src == 'png':
                    row.update({'prediction': text, 'correct': ok, 'token_ids': toks,
                                'min_margin': round(min(margins), 4), 'out_of_vocabulary': oov})
                else:
                    row.update({'prediction_jpeg': text, 'correct_jpeg': ok, 'out_of_vocabulary_jpeg': oov})
            rows.append(row)
        acc = accuracy_table(rows, 'correct')
        acc_j = accuracy_table(rows, 'correct_jpeg')
        result['models'][name] = {
            'dir': os.path.relpath(os.path.abspath(d), ROOT),
            'mode': r.cfg.lavi_config.mode,
            'weights_dtype': r.weights_dtypes,
            'n_params': r.n_params,
            'file_bytes': r.bytes,
            'accuracy': acc,
            'accuracy_jpeg': acc_j,
            'n_per_type': {t: sum(x['type'] == t for x in rows) for t in types_of(rows)},
            'out_of_vocabulary': sum(x['out_of_vocabulary'] for x in rows),
            'out_of_vocabulary_jpeg': sum(x['out_of_vocabulary_jpeg'] for x in rows),
            'eval_seconds': round(time.time() - t0, 1),
            'predictions': rows,
        }
        print(os.path.basename(qdir), name, 'png', json.dumps(acc), 'jpeg', json.dumps(acc_j), 'out of vocabulary',
              result['models'][name]['out_of_vocabulary'], result['models'][name]['out_of_vocabulary_jpeg'], flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, 'w') as f:
        json.dump(result, f, indent=1)
        f.write('\n')
    print('wrote', a.out)


# the golden questions: (set, type) -- the first question of that type in the set; for the shifted split the
# first of that type whose picture is not 48 x 48 (the engine's resize is part of what the golden checks)
GOLDEN = (('test', 'color'), ('test', 'count'), ('test', 'describe'), ('shifted', 'position'), ('oot', 'animals'))


@torch.no_grad()
def run_golden(a) -> None:
    torch.set_num_threads(a.threads)
    r = Runner(a.model)
    gold: Dict[str, torch.Tensor] = {}
    picked = []
    for k, (sname, t) in enumerate(GOLDEN):
        qdir = os.path.join(ROOT, 'examples', 'vqa', sname)
        qs = load_questions(os.path.join(qdir, 'questions.jsonl'))
        for i, q in enumerate(qs):
            if q['type'] != t:
                continue
            u8 = torch.from_numpy(vqa_data.load_image(os.path.join(qdir, q['image'])))
            if sname != 'shifted' or tuple(u8.shape[:2]) != (r.cfg.vision_config.image_size,) * 2:
                break
        px = r.pixels(os.path.join(qdir, q['image']))
        ids = r.prompt_ids(q['question'])
        out = r.model(torch.tensor([ids]), pixel_values=px)
        logits = out['text_logits'][0]
        text, toks, margins = r.answer(q['question'], px)
        gold[f'q{k}.input_ids'] = torch.tensor(ids, dtype=torch.int32)
        gold[f'q{k}.image'] = u8.contiguous()
        gold[f'q{k}.pixel_values'] = px.to(torch.float32)
        gold[f'q{k}.logits'] = logits.to(torch.float32)
        gold[f'q{k}.answer_ids'] = torch.tensor(toks, dtype=torch.int32)
        picked.append({'key': f'q{k}', 'split': f'examples/vqa/{sname}', 'index': i, 'image': q['image'],
                       'question': q['question'], 'answer': q['answer'], 'type': t, 'prediction': text,
                       'min_margin': round(min(margins), 4)})
        print(picked[-1])
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    meta = {
        'generator': 'models/reference/eval_vqa.py golden',
        'checkpoint': os.path.relpath(os.path.abspath(a.model), ROOT),
        'questions': json.dumps(picked),
        'questions_note': 'image paths are relative to each question\'s split directory',
        'compute_dtype': 'float64 from the shipped float16 weights; logits and pixel_values stored as F32',
        'layout': 'qK.input_ids I32 [T] prompt ids (chat template applied); qK.image U8 [H,W,3] the PNG; '
                  'qK.pixel_values F32 [1,3,S,S] = (bilinear resize of u8 to S x S)/255, then (x - mean)/std; qK.logits F32 [T,vocab] at every prompt '
                  'position; qK.answer_ids I32 greedy continuation (max 64 tokens) including the stop token',
    }
    save_safetensors(a.out, gold, meta)
    print('wrote', a.out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    e = sub.add_parser('eval')
    e.add_argument('models', nargs='+', help='checkpoint directories')
    e.add_argument('--sets', default='test,shifted,oot', help='which of the held-out sets (examples/vqa/<set>)')
    e.add_argument('--out-dir', default=os.path.join(ROOT, 'models', 'weights'),
                   help='where the eval-pytorch*.json files go')
    e.add_argument('--questions', default=None, help='one other questions.jsonl instead of the sets (needs --out)')
    e.add_argument('--out', default=None)
    e.add_argument('--threads', type=int, default=2)
    g = sub.add_parser('golden')
    g.add_argument('--model', default=os.path.join(ROOT, 'models', 'weights', 'lavi-vqa'))
    g.add_argument('--out', default=os.path.join(ROOT, 'test', 'fixtures', 'vqa', 'logits-golden.safetensors'))
    g.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(argv)
    if a.cmd == 'eval':
        run_eval(a)
    else:
        run_golden(a)


if __name__ == '__main__':
    main()
