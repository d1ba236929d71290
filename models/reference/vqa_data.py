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

The shipped checkpoints are trained on a widened version of this task (issue 18; the section "The widened
task" below): pictures of any size and aspect, varied backgrounds, noise, gradients, JPEG, continuous object
sizes and positions, colour shades, 1 to 5 objects, several phrasings per question type, and out-of-task
questions answered with OUT_OF_TASK_ANSWER. The fixed renders above still make the original held-out split.

Command line (Debian's interpreter, with python3-pil installed):
  /usr/bin/python3 models/reference/vqa_data.py write-test      # examples/vqa/test/ (PNG + JPEG + questions.jsonl)
  /usr/bin/python3 models/reference/vqa_data.py write-shifted   # examples/vqa/shifted/ (the shifted held-out split)
  /usr/bin/python3 models/reference/vqa_data.py write-oot       # examples/vqa/oot/ (held-out out-of-task questions)
  /usr/bin/python3 models/reference/vqa_data.py write-examples  # examples/images/* (+ questions.json)
  /usr/bin/python3 models/reference/vqa_data.py show --split train --index 0   # print a scene and its questions
"""

from __future__ import annotations

import argparse
import dataclasses
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

    def __init__(self, seed: int = SPLIT_SEEDS['train'], small_pictures: float = 0.0):
        if not 0.0 <= small_pictures <= 1.0:
            raise ValueError(f'small_pictures must be a share in [0, 1], got {small_pictures!r}')
        self.seed = seed
        self.small_pictures = small_pictures
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


# =============================================================================================================
# The widened task (issue 18): varied rendering, phrasings, up to 5 objects, out-of-task questions
# =============================================================================================================
#
# The shipped checkpoints since issue 18 are trained on this stream, not on the fixed 48 x 48 renders above
# (which still make the original held-out split, examples/vqa/test/, unchanged). What varies, per image:
#   picture size   long side log-uniform in [32, 1024] px (15% exactly 48 x 48), aspect up to 1.8:1 either way;
#                  the model reads what the engine's resize makes of it (bilinear, half-pixel centres, no
#                  antialiasing: to_model_pixels below, equal to models/image.ts). Pictures wider than
#                  RENDER_CAP px are drawn at RENDER_CAP on the long side: a bilinear resize of a larger picture
#                  samples it just as sparsely (point samples), so the 48 x 48 result has the same statistics.
#   the grid       cells are thirds of the picture's width and height; object sizes scale with the short side,
#                  so a circle stays round in the picture (and becomes an ellipse after the resize)
#   objects        1 to 5; half-extent continuous in [2.6, 4.2] (small) or [5.0, 7.0] (large) native px (the
#                  cell is 16); centre jittered up to +-clip(7.6 - r, 1, 4.5) px inside its cell; colour shades:
#                  brightness x[0.82, 1.1] and +-8 per channel
#   background     the original canvas (35%) or any grey level 0..255 with a tint up to +-16 per channel; a
#                  linear gradient up to +-30 (half the images); Gaussian noise sigma up to 8 (half)
#   edges          antialiased (4x or 2x supersampling, 80%) or aliased (20%)
#   encoding       JPEG round trip at quality 30..95 (half the images), 4:4:4 or 4:2:0
# The shifted held-out split (examples/vqa/shifted/) draws every one of these from the outer parts of the same
# ranges (extreme sizes and aspect ratios, objects near a class's size limits and near their cell's edges,
# dark or tinted backgrounds, strong gradients and noise, low JPEG qualities).
#
# Questions: every question of `candidates` is rewritten into one of several phrasings (`paraphrase`), in
# original, lower or upper case, with or without the final punctuation. The answers keep their canonical form.
# Out-of-task questions (people, animals, text, weather, things that are not shapes, anything else) are answered
# with OUT_OF_TASK_ANSWER. Their nouns and templates are split: the held-out out-of-task set
# (examples/vqa/oot/) uses nouns and templates that training never sees.

OUT_OF_TASK_ANSWER = 'I can only answer questions about the coloured shapes in the picture.'
TRAIN_TYPES = QUESTION_TYPES + ('oot',)
MAX_OBJECTS_WIDE = 5
RENDER_CAP = 160
SMALL_RANGE = (2.6, 4.2)
LARGE_RANGE = (5.0, 7.0)
# The training stream draws from wider ranges than the domain above (which the held-out splits use), so the
# shifted split's tails lie inside what training saw, not on its edge; the size classes' inner edges (4.2 / 5.0)
# stay put, since they define small and large.
TRAIN_SMALL_RANGE = (2.3, 4.2)
TRAIN_LARGE_RANGE = (5.0, 7.3)
SPLIT_SEEDS.update({'valw': 5005, 'shifted': 4004, 'oot': 6006})
SHIFTED_IMAGES = 126
VALW_IMAGES = 300


@dataclass(frozen=True)
class Style:
    width: int
    height: int
    bg: Tuple[int, int, int]
    grad: Tuple[float, float, float]  # amplitude (+- at the corners) and direction (unit vector x, y)
    noise: float  # Gaussian sigma, 0..255 scale
    supersample: int  # 1 = aliased edges
    jpeg: int  # 0 = none, else the JPEG quality of the round trip
    subsampling: int  # PIL's JPEG subsampling: 0 = 4:4:4, 2 = 4:2:0
    seed: int  # of the noise


@dataclass(frozen=True)
class WObj:
    cell: int
    shape: str
    color: str
    size: str
    dx: float  # centre offset from the cell centre, native px
    dy: float
    r: float  # half-extent, native px
    shade: Tuple[float, float, float, float]  # brightness factor, per-channel offsets

    def key(self) -> Tuple[int, str, str, str]:
        return (self.cell, self.shape, self.color, self.size)


def _tail(rng: np.random.Generator, lo: float, hi: float, frac: float) -> float:
    """Uniform over the outer `frac` of [lo, hi] (either end)."""
    w = (hi - lo) * frac
    u = float(rng.uniform(0, 2 * w))
    return lo + u if u < w else hi - (u - w)


def random_scene_wide(rng: np.random.Generator, shifted: bool = False, train: bool = False) -> Tuple[WObj, ...]:
    """A scene of the widened task: the domain's ranges (held-out splits), their outer parts (shifted=True), or
    the training stream's wider ranges (train=True)."""
    n = int(rng.integers(1, MAX_OBJECTS_WIDE + 1))
    cells = sorted(int(c) for c in rng.choice(9, size=n, replace=False))
    objs = []
    for c in cells:
        size = SIZES[int(rng.integers(len(SIZES)))]
        if train:
            lo, hi = TRAIN_SMALL_RANGE if size == 'small' else TRAIN_LARGE_RANGE
        else:
            lo, hi = SMALL_RANGE if size == 'small' else LARGE_RANGE
        r = _tail(rng, lo, hi, 0.2) if shifted else float(rng.uniform(lo, hi))
        jm = float(np.clip(7.6 - r, 1.0, 4.5))
        if shifted:  # near the cell's edge on at least one axis
            dx, dy = _tail(rng, -jm, jm, 0.25), float(rng.uniform(-jm, jm))
            if rng.random() < 0.5:
                dx, dy = dy, dx
        else:
            dx, dy = float(rng.uniform(-jm, jm)), float(rng.uniform(-jm, jm))
        if train:
            b = float(rng.uniform(0.76, 1.16))
            off = rng.uniform(-10, 10, size=3)
        else:
            b = _tail(rng, 0.82, 1.1, 0.25) if shifted else float(rng.uniform(0.82, 1.1))
            off = rng.uniform(-8, 8, size=3)
        objs.append(WObj(c, SHAPES[int(rng.integers(len(SHAPES)))], COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
                         size, dx, dy, r, (b, float(off[0]), float(off[1]), float(off[2]))))
    return tuple(objs)


def random_style(rng: np.random.Generator, shifted: bool = False, max_side: int = 1024,
                 train: bool = False, small_pictures: float = 0.0) -> Style:
    """Picture size, background, noise, edges and encoding: the domain's ranges, their outer parts (shifted=True)
    or the training stream's wider ranges (train=True: long side from 24 px, aspect up to 2.1:1, gradients up to
    +-40, noise up to sigma 11, JPEG quality from 20). small_pictures (train only): the share of pictures whose
    long side is drawn uniformly from 24..47 px instead (0 draws nothing from rng, so the stream is unchanged)."""
    max_aspect = 2.1 if train else 1.8
    if shifted:
        # long side: small (32-44) or large; aspect near the limits or square
        long_side = int(rng.integers(32, 45)) if rng.random() < 0.4 else int(np.exp(rng.uniform(np.log(96), np.log(max_side))))
        aspect = float(np.exp(_tail(rng, -np.log(1.8), np.log(1.8), 0.3))) if rng.random() < 0.7 else 1.0
    elif rng.random() < 0.15:
        long_side, aspect = 48, 1.0
    else:
        long_side = int(np.exp(rng.uniform(np.log(24 if train else 32), np.log(max_side))))
        if train and small_pictures > 0 and rng.random() < small_pictures:
            long_side = int(rng.integers(24, 48))
        aspect = float(np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect)))) \
            if rng.random() < (0.6 if train else 0.5) else 1.0
    if aspect >= 1:
        w, h = long_side, max(24 if not train else 16, int(round(long_side / aspect)))
    else:
        w, h = max(24 if not train else 16, int(round(long_side * aspect))), long_side
    if not shifted and rng.random() < (0.25 if train else 0.35):
        bg = BACKGROUND
    else:
        g = (float(rng.uniform(0, 60)) if rng.random() < 0.5 else float(rng.uniform(200, 255))) if shifted \
            else float(rng.uniform(0, 255))
        t = rng.uniform(-16, 16, size=3)
        bg = tuple(int(np.clip(round(g + x), 0, 255)) for x in t)
    ang = float(rng.uniform(0, 2 * np.pi))
    if shifted:
        amp = float(rng.uniform(20, 30)) if rng.random() < 0.6 else 0.0
        noise = float(rng.uniform(5, 8)) if rng.random() < 0.5 else 0.0
        jpeg = int(rng.integers(30, 50)) if rng.random() < 0.5 else 0
    elif train:
        amp = float(rng.uniform(0, 40)) if rng.random() < 0.5 else 0.0
        noise = float(rng.uniform(0, 11)) if rng.random() < 0.5 else 0.0
        jpeg = int(rng.integers(20, 96)) if rng.random() < 0.5 else 0
    else:
        amp = float(rng.uniform(0, 30)) if rng.random() < 0.5 else 0.0
        noise = float(rng.uniform(0, 8)) if rng.random() < 0.5 else 0.0
        jpeg = int(rng.integers(30, 96)) if rng.random() < 0.5 else 0
    u = rng.random()
    ss = 4 if u < 0.6 else (2 if u < 0.8 else 1)
    return Style(w, h, bg, (amp, float(np.cos(ang)), float(np.sin(ang))), noise, ss, jpeg,
                 0 if rng.random() < 0.5 else 2, int(rng.integers(1 << 30)))


def render_wide(scene: Sequence[WObj], style: Style, cap: Optional[int] = RENDER_CAP) -> np.ndarray:
    """uint8 [H, W, 3] picture of the scene in the style; with cap, a picture larger than cap px on its long side
    is drawn at cap px on its long side (same aspect)."""
    from PIL import Image, ImageDraw
    import io

    W, H = style.width, style.height
    if cap is not None and max(W, H) > cap:
        k = cap / max(W, H)
        W, H = max(1, int(round(W * k))), max(1, int(round(H * k)))
    ss = style.supersample if max(W, H) <= 512 else 1
    img = Image.new('RGB', (W * ss, H * ss), style.bg)
    draw = ImageDraw.Draw(img)
    sx, sy = W * ss / IMAGE_SIZE, H * ss / IMAGE_SIZE  # supersampled px per native px, per axis
    sr = min(sx, sy)
    cell = IMAGE_SIZE / 3.0
    for o in scene:
        row, col = divmod(o.cell, 3)
        cx = ((col + 0.5) * cell + o.dx) * sx
        cy = ((row + 0.5) * cell + o.dy) * sy
        r = o.r * sr
        base = COLORS[o.color]
        b = o.shade[0]
        fill = tuple(int(np.clip(round(base[i] * b + o.shade[1 + i]), 0, 255)) for i in range(3))
        if o.shape == 'circle':
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif o.shape == 'square':
            h = 0.88 * r
            draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
        elif o.shape == 'triangle':
            top, bottom, half = cy - 0.95 * r, cy + 0.95 * r, 1.05 * r
            draw.polygon([(cx, top), (cx + half, bottom), (cx - half, bottom)], fill=fill)
        elif o.shape == 'cross':
            t = 0.36 * r
            draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=fill)
            draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=fill)
        else:
            raise ValueError(o.shape)
    if ss > 1:
        img = img.resize((W, H), Image.BOX)
    x = np.asarray(img, dtype=np.float32)
    amp, gx, gy = style.grad
    if amp > 0 or style.noise > 0:
        if amp > 0:
            u = (np.arange(W, dtype=np.float32) / max(W - 1, 1) - 0.5) * 2
            v = (np.arange(H, dtype=np.float32) / max(H - 1, 1) - 0.5) * 2
            x = x + (amp * 0.5 * (gx * u[None, :] + gy * v[:, None]))[..., None]
        if style.noise > 0:
            nr = np.random.Generator(np.random.PCG64(style.seed))
            x = x + nr.standard_normal(x.shape, dtype=np.float32) * style.noise
        x = np.clip(np.rint(x), 0, 255)
    out = x.astype(np.uint8)
    if style.jpeg:
        buf = io.BytesIO()
        Image.fromarray(out, 'RGB').save(buf, format='JPEG', quality=style.jpeg, subsampling=style.subsampling)
        buf.seek(0)
        with Image.open(buf) as im:
            out = np.asarray(im.convert('RGB'), dtype=np.uint8)
    return np.ascontiguousarray(out)


def to_model_pixels(img: np.ndarray, vc, dtype=None):
    """uint8 [H, W, 3] -> [1, 3, S, S] as the engine computes it (models/image/preprocess.ts): bilinear resize with
    half-pixel centres, clamped at the borders, no antialiasing, on the 0..255 values (no rounding), then /255
    and (x - mean) / std; or, with vc.resample set, PIL's Image.resize with that filter (antialiased, 8-bit).
    Identity resize at S x S."""
    import torch
    import torch.nn.functional as F
    dtype = dtype or torch.float64
    S = vc.image_size
    img = np.array(img, dtype=np.uint8)
    resample = getattr(vc, 'resample', None)
    if resample is not None and img.shape[:2] != (S, S):
        from PIL import Image
        img = np.array(Image.fromarray(img).resize((S, S), resample))
    x = torch.from_numpy(img).to(dtype).permute(2, 0, 1)[None]
    if x.shape[2] != S or x.shape[3] != S:
        x = F.interpolate(x, size=(S, S), mode='bilinear', align_corners=False)
    x = x / 255.0
    mean = torch.tensor(vc.image_mean, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(vc.image_std, dtype=dtype).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


# ----- phrasings ---------------------------------------------------------------------------------------------

def _plural_np(np_: str) -> str:
    """'red circle' -> 'red circles', 'cross' -> 'crosses', 'red object' -> 'red objects'."""
    words = np_.split(' ')
    last = words[-1]
    words[-1] = PLURALS.get(last, last + 's')
    return ' '.join(words)


def _object_synonyms(x: str, rng: np.random.Generator) -> str:
    """'red object' -> 'red object' | 'red shape' | 'red one' (only for a phrase ending in 'object')."""
    if x.endswith(' object') and ' in the ' not in x:
        u = rng.random()
        if u < 0.25:
            return x[:-len('object')] + 'shape'
        if u < 0.4:
            return x[:-len('object')] + 'one'
    return x


def paraphrase(q: str, qtype: str, rng: np.random.Generator) -> str:
    """One of several phrasings of a canonical question (see candidates), then a random case and punctuation."""
    import re
    out = q
    m = re.fullmatch(r'What color is the (.+)\?', q)
    if qtype == 'color' and m:
        x = _object_synonyms(m.group(1), rng)
        loc = ' in the ' in x
        forms = ['What color is the {x}?', 'What colour is the {x}?', 'What is the color of the {x}?',
                 'What is the colour of the {x}?', 'Which color is the {x}?', 'What color is the {x}?',
                 'Tell me the color of the {x}.']
        if not loc:
            forms += ['What color is the {x} in the picture?', 'What colour is the {x} in the image?']
        out = forms[int(rng.integers(len(forms)))].format(x=x)
    m = re.fullmatch(r'What shape is the (.+)\?', q)
    if qtype == 'shape' and m:
        x = _object_synonyms(m.group(1), rng)
        forms = ['What shape is the {x}?', 'What is the shape of the {x}?', 'Which shape is the {x}?',
                 'What kind of shape is the {x}?', 'What shape is the {x}?', 'What shape does the {x} have?']
        out = forms[int(rng.integers(len(forms)))].format(x=x)
    m = re.fullmatch(r'How many (.+) are there\?', q)
    if qtype == 'count' and m:
        p = m.group(1)
        if p.endswith('objects') and rng.random() < 0.35:
            p = p[:-len('objects')] + 'shapes'
        forms = ['How many {p} are there?', 'How many {p}?', 'How many {p} are in the image?',
                 'How many {p} are in the picture?', 'How many {p} can you see?', 'Count the {p}.',
                 'What is the number of {p}?', 'How many {p} are there?', 'How many {p} do you see?']
        out = forms[int(rng.integers(len(forms)))].format(p=p)
    m = re.fullmatch(r'Is there (?:a|an) (.+)\?', q)
    if qtype == 'exist' and m:
        y = m.group(1)
        if y.endswith(' object') and rng.random() < 0.3:
            y = y[:-len('object')] + 'shape'
        a = article(y)
        forms = ['Is there {a} {y}?', 'Is there {a} {y} in the image?', 'Is there {a} {y} in the picture?',
                 'Do you see {a} {y}?', 'Does the image contain {a} {y}?', 'Can you see {a} {y}?',
                 'Are there any {ys}?', 'Is there {a} {y}?']
        out = forms[int(rng.integers(len(forms)))].format(a=a, y=y, ys=_plural_np(y))
    m = re.fullmatch(r'Where is the (.+)\?', q)
    if qtype == 'position' and m:
        x = _object_synonyms(m.group(1), rng)
        forms = ['Where is the {x}?', "Where's the {x}?", 'Where is the {x} located?',
                 'In which part of the image is the {x}?', 'Where in the picture is the {x}?',
                 'Where can you find the {x}?', 'Where is the {x}?']
        out = forms[int(rng.integers(len(forms)))].format(x=x)
    if qtype == 'describe':
        forms = ['Describe the image.', 'Describe the picture.', 'Describe this image.', 'What is in the image?',
                 'What do you see?', "What's in the picture?", 'Describe what you see.',
                 'Tell me what is in the image.', 'Describe the image.', 'What does the picture show?']
        out = forms[int(rng.integers(len(forms)))]
    return vary_surface(out, rng)


def vary_surface(q: str, rng: np.random.Generator) -> str:
    """Case (original 60%, lower 30%, upper 5%, first letter lower 5%) and final punctuation (dropped 30%)."""
    u = rng.random()
    if u < 0.3:
        q = q.lower()
    elif u < 0.35:
        q = q.upper()
    elif u < 0.4:
        q = q[:1].lower() + q[1:]
    if rng.random() < 0.3:
        q = q.rstrip('?.')
    return q


# ----- out-of-task questions ---------------------------------------------------------------------------------
# (category, templates, nouns); the last templates and nouns of each list after the '|' marker are held out:
# only the out-of-task test set uses them.

_OOT: Dict[str, Tuple[List[str], List[str]]] = {
    'people': ([
        'What is the {n} doing?', 'Who is the {n}?', 'How old is the {n}?', 'Is the {n} smiling?',
        'What is the {n} wearing?', 'Is there a {n} in the picture?', 'Where is the {n}?',
        'What color is the {n}\'s shirt?', 'How many people are there?', 'Is this a {n}?',
        'What is the {n} holding?', 'Is the {n} happy?', 'Where is the {n} going?', '|',
        'What is the name of the {n}?', 'Why is the {n} sad?', 'What is the {n} looking at?'],
        ['man', 'woman', 'boy', 'girl', 'child', 'person', 'baby', 'player', 'doctor', 'teacher', 'driver',
         'police officer', 'lady', 'student', '|', 'farmer', 'nurse', 'soldier', 'singer', 'old man']),
    'animals': ([
        'Is this a {n}?', 'What breed is the {n}?', 'How many {ns} are there?', 'Is there a {n}?',
        'What color is the {n}?', 'Where is the {n}?', 'What is the {n} eating?', 'What animal is this?',
        'Is the {n} sleeping?', 'Is there a {n} in the image?', 'What kind of animal is in the picture?', '|',
        'How big is the {n}?', 'Is the {n} dangerous?', 'What sound does the {n} make?'],
        ['cat', 'dog', 'bird', 'horse', 'cow', 'fish', 'sheep', 'elephant', 'bear', 'rabbit', 'mouse', 'lion',
         'duck', '|', 'tiger', 'zebra', 'giraffe', 'monkey', 'snake', 'penguin']),
    'text': ([
        'What does the text say?', 'Read the sign.', 'What is written on the {n}?', 'What language is the text in?',
        'What does the sign say?', 'What is the title of the book?', 'What number is on the {n}?',
        'What word is written here?', 'Can you read the text?', 'What does the {n} say?', '|',
        'What is the first letter of the text?', 'Transcribe the text in the image.', 'What font is used?'],
        ['sign', 'shirt', 'bus', 'door', 'board', 'label', 'paper', 'screen', 'wall', '|', 'banner', 'poster',
         'license plate', 'jersey']),
    'weather': ([
        'What is the weather like?', 'Is it raining?', 'Is it sunny?', 'What season is it?', 'Is it day or night?',
        'What is the temperature?', 'Is it cold outside?', 'Is it snowing?', 'Is the sky clear?',
        'Will it rain today?', 'Is it windy?', '|', 'Is there a storm coming?', 'How hot is it?',
        'Is it foggy?', 'What time of year is it?', 'Is it hot today?', 'What will the weather be tomorrow?',
        'Are there clouds in the sky?', 'Is the ground wet?', 'How is the weather?'],
        ['']),
    'things': ([
        'What color is the {n}?', 'Is there a {n}?', 'How many {ns} are there?', 'Where is the {n}?',
        'What brand is the {n}?', 'Is the {n} open?', 'What is on the {n}?', 'Is this a {n}?',
        'What shape is the {n}?', 'How big is the {n}?', 'Is the {n} new?', '|', 'What is the {n} made of?',
        'Who owns the {n}?', 'Is the {n} broken?'],
        ['car', 'house', 'tree', 'ball', 'phone', 'chair', 'table', 'cup', 'book', 'bike', 'computer',
         'flower', 'boat', 'lamp', 'shoe', 'hat', 'bottle', 'window', '|', 'train', 'clock', 'umbrella',
         'guitar', 'pizza', 'kite']),
    'other': ([
        'What is the capital of France?', 'Tell me a joke.', 'What time is it?', 'Who painted this?',
        'What is 2 + 2?', 'Translate this to French.', 'Hello', 'What is your name?', 'Write a poem.',
        'Is this photo real?', 'Where was this photo taken?', 'What city is this?', 'Who made you?',
        'What is the meaning of life?', 'Can you help me with my homework?', 'What food is this?',
        'How are you?', 'What room is this?', 'Is this picture beautiful?', 'What sport is being played?',
        'Summarize the news.', 'Why is the sky blue?', '|', 'What is the best movie ever made?',
        'Who won the game?', 'What year was this taken?', 'Explain quantum physics.', 'Where am I?',
        'Is this a painting or a photo?', 'Recommend a good book.', 'Thank you!', 'Who is the president?',
        'How do I cook rice?', 'What is the price of this?', 'Can you draw a cat?', 'What music is playing?'],
        ['']),
}


def _split_list(xs: List[str], heldout: bool) -> List[str]:
    k = xs.index('|') if '|' in xs else len(xs)
    return xs[k + 1:] if heldout else xs[:k]


def _oot_fill(t: str, n: str) -> str:
    ns = PLURALS.get(n, n + ('es' if n.endswith(('s', 'sh', 'ch', 'x')) else 's'))
    if n.endswith('man') and n != 'human':
        ns = n[:-3] + 'men'
    if n == 'mouse':
        ns = 'mice'
    if n in ('fish', 'sheep'):
        ns = n
    if n == 'child':
        ns = 'children'
    if n == 'person':
        ns = 'people'
    if n == 'baby':
        ns = 'babies'
    if n == 'lady':
        ns = 'ladies'
    s = t.format(n=n, ns=ns)
    return s.replace(' a a', ' an a').replace(' a e', ' an e').replace(' a o', ' an o').replace(' a u', ' an u')


def oot_questions(category: str, heldout: bool) -> List[str]:
    """All out-of-task questions of a category: training uses the templates and nouns before the marker;
    held out (heldout=True) are the combinations with a held-out template or a held-out noun."""
    ts_all, ns_all = _OOT[category]
    ts_tr, ns_tr = _split_list(ts_all, False), _split_list(ns_all, False)
    ts_ho, ns_ho = _split_list(ts_all, True), _split_list(ns_all, True)
    out = []
    if not heldout:
        for t in ts_tr:
            for n in (ns_tr if '{n' in t else ['']):
                out.append(_oot_fill(t, n))
    else:
        for t in ts_tr + ts_ho:
            nouns = (ns_tr + ns_ho) if t in ts_ho else ns_ho
            for n in (nouns if '{n' in t else ['']):
                if '{n' not in t and t not in ts_ho:
                    continue
                out.append(_oot_fill(t, n))
    return sorted(set(out))


OOT_CATEGORIES = tuple(_OOT)
_OOT_TRAIN = {c: oot_questions(c, False) for c in OOT_CATEGORIES}


# More nouns for the training templates of _OOT, so that "a noun the task does not know" is what the model learns,
# not a list of nouns: training only (the held-out out-of-task set is made from _OOT alone, and none of these is
# one of its held-out nouns). Some training questions get a made-up word instead (_pseudo_word).
OOT_EXTRA_NOUNS: Dict[str, List[str]] = {
    'people': ['chef', 'pilot', 'king', 'queen', 'mother', 'father', 'worker', 'runner', 'dancer', 'artist',
               'waiter', 'judge', 'clown', 'athlete', 'grandmother', 'kid', 'teenager', 'customer', 'tourist',
               'firefighter', 'scientist', 'friend', 'neighbor', 'actor', 'swimmer', 'cook', 'guard', 'priest'],
    'animals': ['goat', 'pig', 'chicken', 'wolf', 'fox', 'deer', 'frog', 'owl', 'shark', 'whale', 'dolphin',
                'camel', 'donkey', 'turtle', 'spider', 'bee', 'ant', 'butterfly', 'squirrel', 'kangaroo', 'panda',
                'parrot', 'crab', 'goose', 'puppy', 'kitten', 'hamster', 'eagle', 'lizard', 'bat'],
    'things': ['bag', 'pen', 'box', 'key', 'bed', 'sofa', 'laptop', 'bowl', 'plate', 'fork', 'spoon', 'knife',
               'truck', 'plane', 'ship', 'bridge', 'road', 'mountain', 'river', 'cake', 'apple', 'banana',
               'candle', 'mirror', 'towel', 'wallet', 'ring', 'watch', 'camera', 'radio', 'ladder', 'fence',
               'tent', 'rock', 'sock', 'glove', 'jacket', 'cloud', 'sandwich', 'piano', 'door', 'bench'],
    'text': ['menu', 'ticket', 'card', 'letter', 'note', 'page', 'map', 'box', 'bottle', 'cup'],
}
_TASK_WORDS = set(COLOR_NAMES) | set(SHAPES) | set(SIZES) | {'object', 'objects', 'shape', 'shapes', 'one', 'ones',
                                                              'colour', 'color', 'picture', 'image', 'thing'}
_HELDOUT_OOT_NOUNS = {n for ts, ns in _OOT.values() for n in _split_list(ns, True)}
assert not (_HELDOUT_OOT_NOUNS & {n for ns in OOT_EXTRA_NOUNS.values() for n in ns})


def _pseudo_word(rng: np.random.Generator) -> str:
    """A made-up word of 3 to 8 letters, never a task word or a held-out noun."""
    cons, vows = 'bcdfghjklmnprstvwz', 'aeiou'
    while True:
        n = int(rng.integers(3, 9))
        first = int(rng.integers(2))  # start with a consonant (0) or a vowel (1), then alternate
        w = ''.join(cons[int(rng.integers(len(cons)))] if (i + first) % 2 == 0 else vows[int(rng.integers(len(vows)))]
                    for i in range(n))
        if w not in _TASK_WORDS and w not in _HELDOUT_OOT_NOUNS:
            return w


def sample_oot(rng: np.random.Generator) -> QA:
    """A training out-of-task question: 60% from _OOT's training combinations; 40% a training template with
    {n} of a category filled with one of OOT_EXTRA_NOUNS (3 in 4) or a made-up word (1 in 4)."""
    c = OOT_CATEGORIES[int(rng.integers(len(OOT_CATEGORIES)))]
    if c in OOT_EXTRA_NOUNS and rng.random() < 0.4:
        ts = [t for t in _split_list(_OOT[c][0], False) if '{n' in t]
        t = ts[int(rng.integers(len(ts)))]
        pool = OOT_EXTRA_NOUNS[c]
        n = pool[int(rng.integers(len(pool)))] if rng.random() < 0.75 else _pseudo_word(rng)
        return QA(vary_surface(_oot_fill(t, n), rng), OUT_OF_TASK_ANSWER, 'oot')
    qs = _OOT_TRAIN[c]
    return QA(vary_surface(qs[int(rng.integers(len(qs)))], rng), OUT_OF_TASK_ANSWER, 'oot')


# ----- splits of the widened task ----------------------------------------------------------------------------

def wide_scene_and_style(split: str, index: int, attempt: int = 0):
    return scene_and_style_from(rng_for(SPLIT_SEEDS[split], index, attempt), split == 'shifted')


def scene_and_style_from(rng: np.random.Generator, shifted: bool):
    """A held-out scene and style from the domain's ranges or (shifted) their outer parts."""
    scene = random_scene_wide(rng, shifted)
    # files of the shifted split stay small: long side at most 320 px
    style = random_style(rng, shifted, max_side=320 if shifted else 1024)
    return scene, style


def heldout_wide(split: str) -> List[Tuple[Tuple[WObj, ...], Style]]:
    n = {'valw': VALW_IMAGES, 'shifted': SHIFTED_IMAGES}[split]
    other = {scene_key(s) for s in heldout_scenes('test')}
    if split == 'valw':
        other |= {scene_key(s) for s, _ in heldout_wide('shifted')}
    out, seen, i = [], set(), 0
    while len(out) < n:
        s, st = wide_scene_and_style(split, i)
        i += 1
        k = scene_key(s)
        if k in seen or k in other:
            continue
        seen.add(k)
        out.append((s, st))
    return out


def heldout_wide_questions(split: str) -> List[Tuple[int, QA]]:
    """2 questions per image, types cycling, each in a random phrasing (the phrasings training uses)."""
    items = heldout_wide(split)
    rng = rng_for(SPLIT_SEEDS[split], 10_000_000)
    out: List[Tuple[int, QA]] = []
    k = 0
    for i, (s, _) in enumerate(items):
        for _ in range(2):
            for step in range(len(QUESTION_TYPES)):
                t = QUESTION_TYPES[(k + step) % len(QUESTION_TYPES)]
                q = sample_question(s, t, rng)
                if q is not None and all(q.question != p.question for j, p in out if j == i):
                    out.append((i, q))
                    break
            k += 1
    return [(i, QA(paraphrase(q.question, q.type, rng), q.answer, q.type, q.cell)) for i, q in out]


def oot_test_questions(per_category: int = 30) -> List[Tuple[str, str]]:
    """(category, question) of the held-out out-of-task set: per category, a seeded sample of the held-out
    combinations, each with a random case/punctuation."""
    rng = rng_for(SPLIT_SEEDS['oot'], 0)
    out = []
    train_all = {q.lower().rstrip('?.!') for c in OOT_CATEGORIES for q in _OOT_TRAIN[c]}
    for c in OOT_CATEGORIES:
        qs = [q for q in oot_questions(c, True) if q.lower().rstrip('?.!') not in train_all]
        pick = rng.permutation(len(qs))[:per_category]
        for j in sorted(int(x) for x in pick):
            out.append((c, vary_surface(qs[j], rng)))
    return out


class WideTrainStream:
    """Training samples of the widened task by index; scenes equal in content to a held-out scene are skipped."""

    def __init__(self, seed: int = SPLIT_SEEDS['train'], small_pictures: float = 0.0):
        if not 0.0 <= small_pictures <= 1.0:
            raise ValueError(f'small_pictures must be a share in [0, 1], got {small_pictures!r}')
        self.seed = seed
        self.small_pictures = small_pictures
        self.excluded = ({scene_key(s) for s in heldout_scenes('test')} | {scene_key(s) for s in heldout_scenes('val')}
                         | {scene_key(s) for s, _ in heldout_wide('shifted')}
                         | {scene_key(s) for s, _ in heldout_wide('valw')})

    def scene_and_style(self, index: int):
        attempt = 0
        while True:
            rng = rng_for(self.seed, index, attempt)
            s = random_scene_wide(rng, train=True)
            if scene_key(s) not in self.excluded:
                return s, random_style(rng, train=True, small_pictures=self.small_pictures)
            attempt += 1

    def scene(self, index: int):
        return self.scene_and_style(index)[0]

    def sample(self, index: int, qtypes: Sequence[str], attr_pref: float = 0.0):
        s, st = self.scene_and_style(index)
        rng = rng_for(self.seed + 77, index)
        qs = []
        for t in qtypes:
            if t == 'oot':
                qs.append(sample_oot(rng))
                continue
            q = sample_question(s, t, rng, attr_pref) or sample_question(s, 'count', rng)
            qs.append(QA(paraphrase(q.question, q.type, rng), q.answer, q.type, q.cell))
        return render_wide(s, st), qs, s


def corpus_texts_wide(n_scenes: int = 3000) -> Iterator[str]:
    """Tokenizer corpus of the widened task: every candidate question (canonical and 2 random phrasings) and
    answer of n training scenes, and every training out-of-task question (original and lower case) with the
    fixed answer."""
    stream = WideTrainStream()
    rng = rng_for(SPLIT_SEEDS['train'] + 99, 0)
    for i in range(n_scenes):
        s = stream.scene(i)
        for t in QUESTION_TYPES:
            for q in candidates(s, t):
                yield q.question
                yield paraphrase(q.question, t, rng)
                yield paraphrase(q.question, t, rng)
                yield q.answer
    for _ in range(20):
        for c in OOT_CATEGORIES:
            for q in _OOT_TRAIN[c]:
                yield q
                yield q.lower()
                yield OUT_OF_TASK_ANSWER
    for c, pool in OOT_EXTRA_NOUNS.items():
        for t in _split_list(_OOT[c][0], False):
            if '{n' in t:
                for n in pool:
                    yield _oot_fill(t, n)


def in_task_vocabulary(answer: str) -> bool:
    """True if an answer is one of the task's answer forms: a colour, a shape, a number, yes/no, a cell, a
    description ('a|an <size> <colour> <shape> in the <cell>' joined by ', ' and ' and ', final period optional),
    or exactly the out-of-task sentence (case and a final period aside). Anything else (stray words, broken
    descriptions) counts as text outside the task's vocabulary."""
    import re
    a = answer.strip()
    if a.lower().rstrip('.') == OUT_OF_TASK_ANSWER.lower().rstrip('.'):
        return True
    a = a.lower()
    if a.endswith('.'):
        a = a[:-1]
    alt = lambda xs: '(?:' + '|'.join(re.escape(x) for x in xs) + ')'  # noqa: E731
    single = alt(list(COLOR_NAMES) + list(SHAPES) + list(CELLS) + ['yes', 'no']) + '|[0-9]+'
    obj = f'an? {alt(SIZES)} {alt(COLOR_NAMES)} {alt(SHAPES)} in the {alt(CELLS)}'
    desc = f'{obj}(?:(?:, {obj})* and {obj})?'
    return re.fullmatch(f'(?:{single}|{desc})', a) is not None


def write_shifted(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    items = heldout_wide('shifted')
    for i, (s, st) in enumerate(items):
        img = render_wide(s, st, cap=None)
        save_png(img, os.path.join(out_dir, f'img_{i:03d}.png'))
        save_jpeg(img, os.path.join(out_dir, f'img_{i:03d}.jpg'), quality=90)
    with open(os.path.join(out_dir, 'questions.jsonl'), 'w') as f:
        for i, q in heldout_wide_questions('shifted'):
            f.write(json.dumps({'image': f'img_{i:03d}.png', 'jpeg': f'img_{i:03d}.jpg', 'question': q.question,
                                'answer': q.answer, 'type': q.type}) + '\n')
    with open(os.path.join(out_dir, 'scenes.json'), 'w') as f:
        json.dump({f'img_{i:03d}.png': {'style': st.__dict__, 'objects': [o.__dict__ for o in s]}
                   for i, (s, st) in enumerate(items)}, f, indent=0)
        f.write('\n')


def write_shifted_larger(out_dir: str, scale: int, below: int) -> None:
    """A diagnostic, not a held-out set: the shifted split's pictures whose short side is under `below` px, drawn
    again `scale` times larger (same scene, style and noise seed: objects scale with the picture, so only the
    pixel count changes), with their questions; PNG and a quality-90 JPEG copy as write_shifted. Evaluating a
    checkpoint on it and on the same questions of the split itself tells how many of its misses on small pictures
    are for want of pixels."""
    if scale < 1 or below < 1:
        raise ValueError(f'write-shifted-larger: --scale and --below must be positive, got {scale} and {below}')
    os.makedirs(out_dir, exist_ok=True)
    items = heldout_wide('shifted')
    keep = set()
    for i, (s, st) in enumerate(items):
        if min(st.width, st.height) >= below:
            continue
        keep.add(i)
        img = render_wide(s, dataclasses.replace(st, width=st.width * scale, height=st.height * scale), cap=None)
        save_png(img, os.path.join(out_dir, f'img_{i:03d}.png'))
        save_jpeg(img, os.path.join(out_dir, f'img_{i:03d}.jpg'), quality=90)
    with open(os.path.join(out_dir, 'questions.jsonl'), 'w') as f:
        for i, q in heldout_wide_questions('shifted'):
            if i in keep:
                f.write(json.dumps({'image': f'img_{i:03d}.png', 'jpeg': f'img_{i:03d}.jpg', 'question': q.question,
                                    'answer': q.answer, 'type': q.type}) + '\n')


def write_oot(out_dir: str) -> None:
    """Out-of-task questions on the original test split's and the shifted split's pictures (by relative path)."""
    os.makedirs(out_dir, exist_ok=True)
    rng = rng_for(SPLIT_SEEDS['oot'], 1)
    with open(os.path.join(out_dir, 'questions.jsonl'), 'w') as f:
        for k, (c, q) in enumerate(oot_test_questions()):
            split = 'test' if k % 2 == 0 else 'shifted'
            i = int(rng.integers(TEST_IMAGES if split == 'test' else SHIFTED_IMAGES))
            f.write(json.dumps({'image': f'../{split}/img_{i:03d}.png', 'jpeg': f'../{split}/img_{i:03d}.jpg',
                                'question': q, 'answer': OUT_OF_TASK_ANSWER, 'type': c}) + '\n')


def _plain(w: int, h: int, bg=(255, 255, 255)) -> Style:
    return Style(w, h, bg, (0.0, 1.0, 0.0), 0.0, 4, 0, 0, 0)


def _wobj(cell: int, shape: str, color: str, size: str, r: float) -> WObj:
    return WObj(cell, shape, color, size, 0.0, 0.0, r, (1.0, 0.0, 0.0, 0.0))


def examples_wide() -> dict:
    """Pictures unlike the original 48 x 48 renders (issue 18): name -> (objects, style, file format, question)."""
    return {
    'white96.png': ((_wobj(0, 'circle', 'red', 'large', 6.0), _wobj(8, 'square', 'blue', 'large', 6.0)),
                    _plain(96, 96), 'png', 'What color is the circle?'),
    'photo1600x1200.jpg': ((_wobj(0, 'triangle', 'green', 'large', 6.0), _wobj(2, 'square', 'red', 'small', 3.5),
                            _wobj(4, 'cross', 'yellow', 'large', 6.5), _wobj(7, 'circle', 'purple', 'small', 3.8)),
                           _plain(1600, 1200, (236, 238, 242)), 'jpeg', 'How many objects are there?'),
    'dark200x150.png': ((_wobj(4, 'circle', 'red', 'large', 6.0),), _plain(200, 150, (0, 0, 0)), 'png',
                        'Describe the image.'),
    }


def write_examples(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    info = {}
    for name, (scene, question) in EXAMPLES.items():
        save_png(render(scene), os.path.join(out_dir, name))
        answer = [q.answer for t in QUESTION_TYPES for q in candidates(scene, t) if q.question == question]
        info[name] = {'question': question, 'answer': answer[0]}
    for name, (scene, style, fmt, question) in examples_wide().items():
        img = render_wide(scene, style, cap=None)
        if fmt == 'png':
            save_png(img, os.path.join(out_dir, name))
        else:
            save_jpeg(img, os.path.join(out_dir, name), quality=85)
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
    p = sub.add_parser('write-shifted')
    p.add_argument('--out', default=os.path.join(root, 'examples', 'vqa', 'shifted'))
    p = sub.add_parser('write-shifted-larger', help="diagnostic: the shifted split's small pictures drawn larger")
    p.add_argument('--out', required=True)
    p.add_argument('--scale', type=int, default=3)
    p.add_argument('--below', type=int, default=48, help='pictures whose short side is under this many px')
    p = sub.add_parser('write-oot')
    p.add_argument('--out', default=os.path.join(root, 'examples', 'vqa', 'oot'))
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
    elif a.cmd == 'write-shifted':
        write_shifted(a.out)
        print(f'wrote {a.out}')
    elif a.cmd == 'write-shifted-larger':
        write_shifted_larger(a.out, a.scale, a.below)
        print(f'wrote {a.out}')
    elif a.cmd == 'write-oot':
        write_oot(a.out)
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
