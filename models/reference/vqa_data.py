"""Synthetic visual question answering data for training and testing the small LaVi checkpoints.

Every image is a light canvas holding 1 to 4 flat-coloured objects. Each object has a shape, a colour and a size,
and sits in its own cell of a 3 x 3 grid (at most one object per cell), with a little positional and size jitter.
Questions are generated from the scene description, never from pixels, so every answer is known exactly:

  type      example question                              example answer
  color     What color is the triangle?                   red
  shape     What shape is the blue object?                circle
  count     How many red objects are there?               2
  exist     Is there a green square?                      no
  position  Where is the cross?                           top left
  describe  Describe the image.                           a small red circle in the top left and a large blue
                                                          square in the center.

A question that names an object is asked only when exactly one object fits the description. The description
lists objects in row-major cell order (top left first, bottom right last).

Everything is a pure function of integer seeds: scene i of a split is drawn from numpy's PCG64 seeded with
(split seed, i), so any sample can be regenerated on its own. Training scenes whose content (the set of
(cell, shape, colour, size) tuples) equals that of a validation or test scene are skipped, so no held-out image
also appears in training.

Command line (Debian's interpreter, with python3-pil installed):
  /usr/bin/python3 models/reference/vqa_data.py write-test      # examples/vqa/test/ (PNG + JPEG + questions.jsonl)
  /usr/bin/python3 models/reference/vqa_data.py write-examples  # examples/images/*.png (+ questions.json)
  /usr/bin/python3 models/reference/vqa_data.py show --split train --index 0   # print a scene and its questions
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np

# =============================================================================================================
# Vocabulary of the world
# =============================================================================================================

IMAGE_SIZE = 48  # native pixels per side; the model reads images at exactly this size
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down, which antialiases their edges
BACKGROUND = (242, 242, 236)

SHAPES = ('circle', 'square', 'triangle', 'cross')
PLURALS = {'circle': 'circles', 'square': 'squares', 'triangle': 'triangles', 'cross': 'crosses'}
COLORS: Dict[str, Tuple[int, int, int]] = {
    'red': (214, 36, 36),
    'green': (34, 156, 58),
    'blue': (36, 76, 222),
    'yellow': (236, 200, 24),
    'purple': (138, 52, 180),
    'orange': (245, 128, 22),
}
COLOR_NAMES = tuple(COLORS)
SIZES = ('small', 'large')
# Cell c of the 3 x 3 grid is row c // 3, column c % 3.
CELLS = ('top left', 'top center', 'top right',
         'center left', 'center', 'center right',
         'bottom left', 'bottom center', 'bottom right')

QUESTION_TYPES = ('color', 'shape', 'count', 'exist', 'position', 'describe')

# Half-extent of an object in native pixels (before jitter), per size. A grid cell is IMAGE_SIZE / 3 = 16 px.
HALF_EXTENT = {'small': 3.6, 'large': 6.0}
SIZE_JITTER = 0.3  # +- native px on the half-extent
POS_JITTER = 1.5  # +- native px on the centre

# Split seeds. The test split is what examples/vqa/test/ holds.
SPLIT_SEEDS = {'train': 1001, 'val': 2002, 'test': 3003}
TEST_IMAGES = 126  # x 2 questions = 252 test questions, 42 per type
VAL_IMAGES = 300


@dataclass(frozen=True)
class Obj:
    cell: int
    shape: str
    color: str
    size: str
    dx: float  # jitter of the centre, native px
    dy: float
    dr: float  # jitter of the half-extent, native px

    def key(self) -> Tuple[int, str, str, str]:
        return (self.cell, self.shape, self.color, self.size)


Scene = Tuple[Obj, ...]  # sorted by cell


def scene_key(scene: Scene) -> Tuple[Tuple[int, str, str, str], ...]:
    """What a scene shows, jitter aside: two scenes with the same key are the same picture to a reader."""
    return tuple(o.key() for o in scene)


def rng_for(split_seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    key = [split_seed, index] if attempt == 0 else [split_seed, index, attempt]
    return np.random.Generator(np.random.PCG64(key))


def random_scene(rng: np.random.Generator) -> Scene:
    n = int(rng.integers(1, 5))
    cells = sorted(int(c) for c in rng.choice(9, size=n, replace=False))
    objs = []
    for c in cells:
        objs.append(Obj(
            cell=c,
            shape=SHAPES[int(rng.integers(len(SHAPES)))],
            color=COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
            size=SIZES[int(rng.integers(len(SIZES)))],
            dx=float(rng.uniform(-POS_JITTER, POS_JITTER)),
            dy=float(rng.uniform(-POS_JITTER, POS_JITTER)),
            dr=float(rng.uniform(-SIZE_JITTER, SIZE_JITTER)),
        ))
    return tuple(objs)


# =============================================================================================================
# Rendering
# =============================================================================================================


def render(scene: Scene, size: int = IMAGE_SIZE, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """uint8 [size, size, 3] RGB image of the scene."""
    from PIL import Image, ImageDraw

    s = float(supersample) * size / IMAGE_SIZE  # supersampled px per native px
    big = size * supersample
    img = Image.new('RGB', (big, big), BACKGROUND)
    draw = ImageDraw.Draw(img)
    cell = IMAGE_SIZE / 3.0
    for o in scene:
        row, col = divmod(o.cell, 3)
        cx = ((col + 0.5) * cell + o.dx) * s
        cy = ((row + 0.5) * cell + o.dy) * s
        r = (HALF_EXTENT[o.size] + o.dr) * s
        fill = COLORS[o.color]
        if o.shape == 'circle':
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif o.shape == 'square':
            h = 0.88 * r  # about the area of the circle of the same extent
            draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
        elif o.shape == 'triangle':
            # upward triangle, its bounding box centred on (cx, cy): base 2.1 r wide, 1.9 r tall
            top, bottom, half = cy - 0.95 * r, cy + 0.95 * r, 1.05 * r
            draw.polygon([(cx, top), (cx + half, bottom), (cx - half, bottom)], fill=fill)
        elif o.shape == 'cross':
            t = 0.36 * r  # half thickness of each bar
            draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=fill)
            draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=fill)
        else:
            raise ValueError(o.shape)
    img = img.resize((size, size), Image.BOX)
    return np.asarray(img, dtype=np.uint8).copy()


# =============================================================================================================
# Questions
# =============================================================================================================


def article(word: str) -> str:
    return 'an' if word[0] in 'aeiou' else 'a'


def describe(scene: Scene) -> str:
    """Canonical one-sentence description, objects in row-major cell order."""
    parts = [f'{article(o.size)} {o.size} {o.color} {o.shape} in the {CELLS[o.cell]}' for o in scene]
    if len(parts) == 1:
        body = parts[0]
    else:
        body = ', '.join(parts[:-1]) + ' and ' + parts[-1]
    return body + '.'


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    type: str
    cell: int = -1  # the cell of the one object the question is about (-1: none, or several); training uses it


def _unique(scene: Scene, **attrs) -> Optional[Obj]:
    hits = [o for o in scene if all(getattr(o, k) == v for k, v in attrs.items())]
    return hits[0] if len(hits) == 1 else None


def candidates(scene: Scene, qtype: str) -> List[QA]:
    """Every question of one type that is unambiguous for this scene (for 'exist', both answers)."""
    out: List[QA] = []
    if qtype == 'color':
        for s in SHAPES:
            o = _unique(scene, shape=s)
            if o:
                out.append(QA(f'What color is the {s}?', o.color, qtype, o.cell))
            else:
                for z in SIZES:
                    o = _unique(scene, shape=s, size=z)
                    if o:
                        out.append(QA(f'What color is the {z} {s}?', o.color, qtype, o.cell))
        for o in scene:
            out.append(QA(f'What color is the object in the {CELLS[o.cell]}?', o.color, qtype, o.cell))
    elif qtype == 'shape':
        for c in COLOR_NAMES:
            o = _unique(scene, color=c)
            if o:
                out.append(QA(f'What shape is the {c} object?', o.shape, qtype, o.cell))
            else:
                for z in SIZES:
                    o = _unique(scene, color=c, size=z)
                    if o:
                        out.append(QA(f'What shape is the {z} {c} object?', o.shape, qtype, o.cell))
        for o in scene:
            out.append(QA(f'What shape is the object in the {CELLS[o.cell]}?', o.shape, qtype, o.cell))
    elif qtype == 'count':
        out.append(QA('How many objects are there?', str(len(scene)), qtype))
        for c in COLOR_NAMES:
            out.append(QA(f'How many {c} objects are there?', str(sum(o.color == c for o in scene)), qtype))
        for s in SHAPES:
            out.append(QA(f'How many {PLURALS[s]} are there?', str(sum(o.shape == s for o in scene)), qtype))
        for z in SIZES:
            out.append(QA(f'How many {z} objects are there?', str(sum(o.size == z for o in scene)), qtype))
    elif qtype == 'exist':
        for c in COLOR_NAMES:
            for s in SHAPES:
                yes = any(o.color == c and o.shape == s for o in scene)
                o = _unique(scene, color=c, shape=s)
                out.append(QA(f'Is there {article(c)} {c} {s}?', 'yes' if yes else 'no', qtype, o.cell if o else -1))
        for s in SHAPES:
            yes = any(o.shape == s for o in scene)
            out.append(QA(f'Is there {article(s)} {s}?', 'yes' if yes else 'no', qtype))
        for c in COLOR_NAMES:
            yes = any(o.color == c for o in scene)
            out.append(QA(f'Is there {article(c)} {c} object?', 'yes' if yes else 'no', qtype))
    elif qtype == 'position':
        for s in SHAPES:
            o = _unique(scene, shape=s)
            if o:
                out.append(QA(f'Where is the {s}?', CELLS[o.cell], qtype, o.cell))
        for c in COLOR_NAMES:
            o = _unique(scene, color=c)
            if o:
                out.append(QA(f'Where is the {c} object?', CELLS[o.cell], qtype, o.cell))
            for s in SHAPES:
                o = _unique(scene, color=c, shape=s)
                if o:
                    out.append(QA(f'Where is the {c} {s}?', CELLS[o.cell], qtype, o.cell))
    elif qtype == 'describe':
        out.append(QA('Describe the image.', describe(scene), qtype))
    else:
        raise ValueError(qtype)
    return out


def _count_weights(qs: Sequence[QA], scene: Scene) -> np.ndarray:
    """Sampling weights for count questions: the total count and present attributes are asked more often than
    absent ones (zero answers would otherwise dominate)."""
    w = []
    for q in qs:
        w.append(3.0 if q.question == 'How many objects are there?' else (1.0 if q.answer != '0' else 0.35))
    w = np.asarray(w)
    return w / w.sum()


def sample_question(scene: Scene, qtype: str, rng: np.random.Generator, attr_pref: float = 0.0) -> Optional[QA]:
    """One question of a type. attr_pref (training only): probability that a colour or shape question names its
    object by attributes ('the triangle') rather than by position ('the object in the top left'), when both
    kinds exist; 0 samples uniformly over all candidates, as the held-out splits do."""
    qs = candidates(scene, qtype)
    if not qs:
        return None
    if attr_pref > 0 and qtype in ('color', 'shape'):
        by_attr = [q for q in qs if ' in the ' not in q.question]
        if by_attr and rng.random() < attr_pref:
            qs = by_attr
    if qtype == 'exist':
        want = 'yes' if rng.random() < 0.5 else 'no'
        pool = [q for q in qs if q.answer == want] or qs
        # hard negatives: prefer absent colour+shape pairs whose colour or shape is present
        if want == 'no':
            present_c = {o.color for o in scene}
            present_s = {o.shape for o in scene}
            hard = [q for q in pool if any(f' {c} ' in q.question for c in present_c)
                    or any(q.question.endswith(f' {s}?') for s in present_s)]
            if hard and rng.random() < 0.7:
                pool = hard
        return pool[int(rng.integers(len(pool)))]
    if qtype == 'count':
        return qs[int(rng.choice(len(qs), p=_count_weights(qs, scene)))]
    return qs[int(rng.integers(len(qs)))]


# =============================================================================================================
# Splits
# =============================================================================================================


def heldout_scenes(split: str) -> List[Scene]:
    """The validation or test scenes (all distinct by content)."""
    n = {'val': VAL_IMAGES, 'test': TEST_IMAGES}[split]
    seed = SPLIT_SEEDS[split]
    other: Set = set() if split == 'test' else {scene_key(s) for s in heldout_scenes('test')}
    out, seen, i = [], set(), 0
    while len(out) < n:
        s = random_scene(rng_for(seed, i))
        i += 1
        k = scene_key(s)
        if k in seen or k in other:
            continue
        seen.add(k)
        out.append(s)
    return out


def heldout_questions(split: str) -> List[Tuple[int, QA]]:
    """(image index, question) pairs of a held-out split: 2 questions per image, types cycling so that every
    type is asked equally often."""
    scenes = heldout_scenes(split)
    rng = rng_for(SPLIT_SEEDS[split], 10_000_000)
    out = []
    k = 0
    for i, s in enumerate(scenes):
        for _ in range(2):
            # walk the type cycle; a type with no candidate for this scene (rare) passes to the next
            for step in range(len(QUESTION_TYPES)):
                t = QUESTION_TYPES[(k + step) % len(QUESTION_TYPES)]
                q = sample_question(s, t, rng)
                if q is not None and all(q.question != p.question for j, p in out if j == i):
                    out.append((i, q))
                    break
            k += 1
    return out


class TrainStream:
    """Training scenes by index, skipping any whose content equals a validation or test scene."""

    def __init__(self, seed: int = SPLIT_SEEDS['train']):
        self.seed = seed
        self.excluded = {scene_key(s) for s in heldout_scenes('test')} | {scene_key(s) for s in heldout_scenes('val')}

    def scene(self, index: int) -> Scene:
        attempt = 0
        while True:
            s = random_scene(rng_for(self.seed, index, attempt))
            if scene_key(s) not in self.excluded:
                return s
            attempt += 1

    def sample(self, index: int, qtypes: Sequence[str], attr_pref: float = 0.0) -> Tuple[np.ndarray, List[QA]]:
        """Image and one question per requested type (types without a candidate are replaced by 'describe'
        or 'count', which always exist)."""
        s = self.scene(index)
        rng = rng_for(self.seed + 77, index)
        qs = []
        for t in qtypes:
            q = sample_question(s, t, rng, attr_pref) or sample_question(s, 'count', rng)
            qs.append(q)
        return render(s), qs


def corpus_texts(n_scenes: int = 3000, seed: int = SPLIT_SEEDS['train']) -> Iterator[str]:
    """Text the tokenizer is trained on: every candidate question and answer of n training scenes."""
    stream = TrainStream(seed)
    for i in range(n_scenes):
        s = stream.scene(i)
        for t in QUESTION_TYPES:
            for q in candidates(s, t):
                yield q.question
                yield q.answer


# =============================================================================================================
# Files
# =============================================================================================================


def save_png(img: np.ndarray, path: str) -> None:
    from PIL import Image
    Image.fromarray(img, 'RGB').save(path, format='PNG', optimize=True)


def save_jpeg(img: np.ndarray, path: str, quality: int = 95) -> None:
    from PIL import Image
    Image.fromarray(img, 'RGB').save(path, format='JPEG', quality=quality, subsampling=0)


def load_image(path: str) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'), dtype=np.uint8).copy()


def write_test(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    scenes = heldout_scenes('test')
    for i, s in enumerate(scenes):
        img = render(s)
        save_png(img, os.path.join(out_dir, f'img_{i:03d}.png'))
        save_jpeg(img, os.path.join(out_dir, f'img_{i:03d}.jpg'))
    with open(os.path.join(out_dir, 'questions.jsonl'), 'w') as f:
        for i, q in heldout_questions('test'):
            f.write(json.dumps({'image': f'img_{i:03d}.png', 'jpeg': f'img_{i:03d}.jpg', 'question': q.question,
                                'answer': q.answer, 'type': q.type}) + '\n')
    with open(os.path.join(out_dir, 'scenes.json'), 'w') as f:
        json.dump({f'img_{i:03d}.png': [o.__dict__ for o in s] for i, s in enumerate(scenes)}, f, indent=0)
        f.write('\n')


# Example images for the README: hand-picked scenes (not drawn from any split's stream).
EXAMPLES = {
    'shapes1.png': ((Obj(0, 'circle', 'red', 'large', 0.0, 0.0, 0.0), Obj(4, 'square', 'blue', 'small', 0.0, 0.0, 0.0),
                     Obj(8, 'triangle', 'yellow', 'large', 0.0, 0.0, 0.0)), 'Describe the image.'),
    'shapes2.png': ((Obj(2, 'cross', 'green', 'large', 0.0, 0.0, 0.0), Obj(3, 'circle', 'purple', 'small', 0.0, 0.0, 0.0),
                     Obj(6, 'circle', 'orange', 'large', 0.0, 0.0, 0.0)), 'How many circles are there?'),
    'shapes3.png': ((Obj(1, 'triangle', 'blue', 'large', 0.0, 0.0, 0.0), Obj(5, 'square', 'red', 'large', 0.0, 0.0, 0.0)),
                    'What color is the triangle?'),
}


def write_examples(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    info = {}
    for name, (scene, question) in EXAMPLES.items():
        save_png(render(scene), os.path.join(out_dir, name))
        answer = [q.answer for t in QUESTION_TYPES for q in candidates(scene, t) if q.question == question]
        info[name] = {'question': question, 'answer': answer[0]}
    with open(os.path.join(out_dir, 'questions.json'), 'w') as f:
        json.dump(info, f, indent=2)
        f.write('\n')


def main(argv: Optional[List[str]] = None) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(os.path.join(here, '..', '..'))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('write-test')
    p.add_argument('--out', default=os.path.join(root, 'examples', 'vqa', 'test'))
    p = sub.add_parser('write-examples')
    p.add_argument('--out', default=os.path.join(root, 'examples', 'images'))
    p = sub.add_parser('show')
    p.add_argument('--split', default='train', choices=['train', 'val', 'test'])
    p.add_argument('--index', type=int, default=0)
    p.add_argument('--png', default=None, help='also write the image here')
    a = ap.parse_args(argv)
    if a.cmd == 'write-test':
        write_test(a.out)
        print(f'wrote {a.out}')
    elif a.cmd == 'write-examples':
        write_examples(a.out)
        print(f'wrote {a.out}')
    else:
        s = TrainStream().scene(a.index) if a.split == 'train' else heldout_scenes(a.split)[a.index]
        for o in s:
            print(o)
        for t in QUESTION_TYPES:
            for q in candidates(s, t)[:6]:
                print(f'  [{t}] {q.question} -> {q.answer}')
        if a.png:
            save_png(render(s), a.png)


if __name__ == '__main__':
    sys.exit(main())
