"""Byte-level BPE in the Hugging Face tokenizer.json format used by Qwen2: a small trainer, an encoder and a
decoder, with no dependency beyond the standard library.

The file this writes has the same structure as a real Qwen2 tokenizer.json:
  normalizer      NFC
  pre_tokenizer   Sequence[ Split(Regex = Qwen2's pattern, behavior Isolated),
                            ByteLevel(add_prefix_space false, trim_offsets false, use_regex false) ]
  model           BPE: vocab {token string: id}, merges ["left right", ...] in rank order; the 256 single-byte
                  tokens (GPT-2 byte-to-unicode alphabet) come first, ids 0..255 in byte order
  decoder         ByteLevel
  added_tokens    <|endoftext|>, <|im_start|>, <|im_end|> (special) with the ids right after the BPE vocab

Encoding follows the Hugging Face pipeline: added tokens are split out of the text first (matched literally,
longest first), each remaining segment is NFC-normalised, split by the pre-tokenizer pattern, mapped byte by
byte to the GPT-2 alphabet, and merged by BPE (repeatedly the adjacent pair of lowest merge rank).

The pattern uses \\p{L} and \\p{N}, which Python's re module lacks; `pretokenize` implements it by hand with
the regex engine's leftmost-first alternation and backtracking, using Unicode categories (L*, N*) and the
Unicode White_Space property.

Command line:
  /usr/bin/python3 models/reference/bpe_tokenizer.py train --out tokenizer.json   # on the VQA corpus
  /usr/bin/python3 models/reference/bpe_tokenizer.py encode tokenizer.json "What color is the circle?"
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import unicodedata
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ('<|endoftext|>', '<|im_start|>', '<|im_end|>')

# =============================================================================================================
# Byte-level alphabet (GPT-2)
# =============================================================================================================


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte -> printable character map: printable Latin-1 bytes map to themselves, the other
    68 bytes to U+0100 onwards, in byte order."""
    keep = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}

# =============================================================================================================
# Pre-tokenizer: Qwen2's split pattern, by hand
# =============================================================================================================

_WHITE_SPACE = set(map(chr, [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                             0x2028, 0x2029, 0x202F, 0x205F, 0x3000]))


def _is_space(c: str) -> bool:
    return c in _WHITE_SPACE


def _is_letter(c: str) -> bool:
    return unicodedata.category(c)[0] == 'L'


def _is_number(c: str) -> bool:
    return unicodedata.category(c)[0] == 'N'


def _is_newline(c: str) -> bool:
    return c == '\r' or c == '\n'


def _match_at(s: str, i: int) -> int:
    """End of the match of QWEN2_PATTERN starting at i (> i), trying the alternatives in order."""
    n = len(s)
    c = s[i]
    # 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c == "'" and i + 1 < n:
        two = s[i + 1:i + 3].lower()
        one = s[i + 1].lower()
        if one in ('s', 't'):
            return i + 2
        if two in ('re', 've'):
            return i + 3
        if one == 'm':
            return i + 2
        if two == 'll':
            return i + 3
        if one == 'd':
            return i + 2
    # 2. [^\r\n\p{L}\p{N}]?\p{L}+
    j = None
    if not _is_newline(c) and not _is_letter(c) and not _is_number(c) and i + 1 < n and _is_letter(s[i + 1]):
        j = i + 1
    elif _is_letter(c):
        j = i
    if j is not None:
        while j < n and _is_letter(s[j]):
            j += 1
        return j
    # 3. \p{N}
    if _is_number(c):
        return i + 1

    # 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    def _punct(ch: str) -> bool:
        return not _is_space(ch) and not _is_letter(ch) and not _is_number(ch)

    j = None
    if c == ' ' and i + 1 < n and _punct(s[i + 1]):
        j = i + 1
    elif _punct(c):
        j = i
    if j is not None:
        while j < n and _punct(s[j]):
            j += 1
        while j < n and _is_newline(s[j]):
            j += 1
        return j
    # the rest start with whitespace; c is whitespace here (every other character matched above)
    end = i
    while end < n and _is_space(s[end]):
        end += 1
    # 5. \s*[\r\n]+  : greedy whitespace backtracks to just after the last newline of the run
    last_nl = max((k for k in range(i, end) if _is_newline(s[k])), default=-1)
    if last_nl >= 0:
        return last_nl + 1
    # 6. \s+(?!\S)   : the whole run at the end of the text, else the run minus its last character
    if end == n:
        return end
    if end - i >= 2:
        return end - 1
    # 7. \s+
    return end


def pretokenize(s: str) -> List[str]:
    """Splits s into the pieces Qwen2's Split(Regex, Isolated) pre-tokenizer produces."""
    out, i = [], 0
    while i < len(s):
        j = _match_at(s, i)
        out.append(s[i:j])
        i = j
    return out


# =============================================================================================================
# Training
# =============================================================================================================


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
              log=None) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Byte-level BPE on the pre-tokenized texts. Returns (vocab, merges): the 256 byte tokens, then one token per
    merge, until the vocab (without added tokens) holds vocab_size tokens or no pair occurs min_frequency times.
    Ties between equally frequent pairs go to the pair whose strings sort first, so training is deterministic."""
    words: collections.Counter = collections.Counter()
    for t in texts:
        for piece in pretokenize(unicodedata.normalize('NFC', t)):
            words[''.join(BYTE_TO_CHAR[b] for b in piece.encode('utf-8'))] += 1
    vocab = {BYTE_TO_CHAR[b]: b for b in range(256)}
    merges: List[Tuple[str, str]] = []
    segs = {w: list(w) for w in words}
    while len(vocab) < vocab_size:
        pairs: collections.Counter = collections.Counter()
        for w, f in words.items():
            sg = segs[w]
            for a, b in zip(sg, sg[1:]):
                pairs[(a, b)] += f
        if not pairs:
            break
        best_count = max(pairs.values())
        if best_count < min_frequency:
            break
        best = min(p for p, c in pairs.items() if c == best_count)
        merged = best[0] + best[1]
        merges.append(best)
        vocab[merged] = len(vocab)
        for w in words:
            sg = segs[w]
            if len(sg) < 2:
                continue
            out, k = [], 0
            while k < len(sg):
                if k + 1 < len(sg) and sg[k] == best[0] and sg[k + 1] == best[1]:
                    out.append(merged)
                    k += 2
                else:
                    out.append(sg[k])
                    k += 1
            segs[w] = out
        if log and len(merges) % 100 == 0:
            log(f'{len(merges)} merges, last {best!r} x{best_count}')
    return vocab, merges


def tokenizer_json(vocab: Dict[str, int], merges: Sequence[Tuple[str, str]]) -> dict:
    byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': False, 'use_regex': False}
    added = [{'id': len(vocab) + i, 'content': t, 'single_word': False, 'lstrip': False, 'rstrip': False,
              'normalized': False, 'special': True} for i, t in enumerate(SPECIAL_TOKENS)]
    return {
        'version': '1.0',
        'truncation': None,
        'padding': None,
        'added_tokens': added,
        'normalizer': {'type': 'NFC'},
        'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
            {'type': 'Split', 'pattern': {'Regex': QWEN2_PATTERN}, 'behavior': 'Isolated', 'invert': False},
            dict(byte_level),
        ]},
        'post_processor': dict(byte_level),
        'decoder': dict(byte_level),
        'model': {
            'type': 'BPE',
            'dropout': None,
            'unk_token': None,
            'continuing_subword_prefix': '',
            'end_of_word_suffix': '',
            'fuse_unk': False,
            'byte_fallback': False,
            'ignore_merges': False,
            'vocab': dict(sorted(vocab.items(), key=lambda kv: kv[1])),
            'merges': [f'{a} {b}' for a, b in merges],
        },
    }


# =============================================================================================================
# Encoding / decoding
# =============================================================================================================


class Tokenizer:
    """Encoder/decoder for a byte-level BPE tokenizer.json (the subset used by Qwen2-style files)."""

    def __init__(self, spec: dict):
        m = spec['model']
        if m.get('type') != 'BPE':
            raise ValueError('only BPE models are supported')
        self.vocab: Dict[str, int] = dict(m['vocab'])
        merges = [tuple(x.split(' ')) if isinstance(x, str) else tuple(x) for x in m['merges']]
        self.ranks = {(a, b): r for r, (a, b) in enumerate(merges)}
        self.added: Dict[str, int] = {t['content']: t['id'] for t in spec.get('added_tokens', [])}
        self.special = {t['content'] for t in spec.get('added_tokens', []) if t.get('special')}
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.id_to_token.update({i: t for t, i in self.added.items()})
        norm = spec.get('normalizer')
        self.nfc = bool(norm) and norm.get('type') == 'NFC'
        self._cache: Dict[str, List[int]] = {}

    @staticmethod
    def load(path: str) -> 'Tokenizer':
        with open(path, encoding='utf-8') as f:
            return Tokenizer(json.load(f))

    @property
    def vocab_size(self) -> int:
        return max(self.id_to_token) + 1

    def token_id(self, token: str) -> int:
        return self.added[token] if token in self.added else self.vocab[token]

    def _bpe(self, piece: str) -> List[int]:
        hit = self._cache.get(piece)
        if hit is not None:
            return hit
        sg = [BYTE_TO_CHAR[b] for b in piece.encode('utf-8')]
        while len(sg) > 1:
            best, best_rank = -1, None
            for k in range(len(sg) - 1):
                r = self.ranks.get((sg[k], sg[k + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = k, r
            if best < 0:
                break
            a, b = sg[best], sg[best + 1]
            out, k = [], 0
            while k < len(sg):  # merge every occurrence of the pair, left to right
                if k + 1 < len(sg) and sg[k] == a and sg[k + 1] == b:
                    out.append(a + b)
                    k += 2
                else:
                    out.append(sg[k])
                    k += 1
            sg = out
        ids = [self.vocab[t] for t in sg]
        self._cache[piece] = ids
        return ids

    def _split_added(self, text: str) -> List[Tuple[str, bool]]:
        """Splits out added tokens (literal matches, leftmost, longest first)."""
        out: List[Tuple[str, bool]] = []
        toks = sorted(self.added, key=len, reverse=True)
        i, start = 0, 0
        while i < len(text):
            hit = next((t for t in toks if text.startswith(t, i)), None)
            if hit is None:
                i += 1
                continue
            if start < i:
                out.append((text[start:i], False))
            out.append((hit, True))
            i += len(hit)
            start = i
        if start < len(text):
            out.append((text[start:], False))
        return out

    def encode(self, text: str) -> List[int]:
        ids: List[int] = []
        for seg, is_added in self._split_added(text):
            if is_added:
                ids.append(self.added[seg])
                continue
            if self.nfc:
                seg = unicodedata.normalize('NFC', seg)
            for piece in pretokenize(seg):
                ids.extend(self._bpe(piece))
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        out, buf = [], []
        for i in ids:
            t = self.id_to_token[int(i)]
            if t in self.added:
                if buf:
                    out.append(bytes(buf).decode('utf-8', errors='replace'))
                    buf = []
                if not (skip_special_tokens and t in self.special):
                    out.append(t)
                continue
            buf.extend(CHAR_TO_BYTE[ch] for ch in t)
        if buf:
            out.append(bytes(buf).decode('utf-8', errors='replace'))
        return ''.join(out)


# =============================================================================================================
# Chat format of the shipped models
# =============================================================================================================

CHAT_TEMPLATE = '<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n'


def prompt_text(question: str) -> str:
    return CHAT_TEMPLATE.replace('{question}', question)


def encode_example(tok: Tokenizer, question: str, answer: Optional[str] = None) -> Tuple[List[int], List[int]]:
    """(ids, labels) of one prompt (+ answer + <|im_end|>); labels are -100 except on the answer tokens and the
    closing <|im_end|>."""
    p = tok.encode(prompt_text(question))
    if answer is None:
        return p, [-100] * len(p)
    a = tok.encode(answer) + [tok.token_id('<|im_end|>')]
    return p + a, [-100] * len(p) + a


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('train', help='train on the VQA corpus (models/reference/vqa_data.py)')
    p.add_argument('--out', required=True)
    p.add_argument('--vocab-size', type=int, default=1024, help='BPE vocab without the added tokens (upper bound)')
    p.add_argument('--scenes', type=int, default=3000)
    p.add_argument('--data', choices=['fixed', 'wide'], default='wide',
                   help='wide: the widened task of issue 18 (phrasings, out-of-task questions); fixed: the original')
    p = sub.add_parser('encode')
    p.add_argument('tokenizer')
    p.add_argument('text')
    a = ap.parse_args(argv)
    if a.cmd == 'train':
        import vqa_data
        texts = list(vqa_data.corpus_texts_wide(a.scenes) if a.data == 'wide' else vqa_data.corpus_texts(a.scenes))
        # the template's own text between its added tokens ('user\n', '\n', 'assistant\n')
        texts += [seg for seg in prompt_text('').split('<|im_start|>') for seg in seg.split('<|im_end|>') if seg] * 1000
        vocab, merges = train_bpe(texts, a.vocab_size, log=lambda s: print(s, file=sys.stderr))
        with open(a.out, 'w', encoding='utf-8') as f:
            json.dump(tokenizer_json(vocab, merges), f, ensure_ascii=False, indent=1)
            f.write('\n')
        print(f'{a.out}: {len(vocab)} BPE tokens ({len(merges)} merges) + {len(SPECIAL_TOKENS)} added tokens')
    else:
        tok = Tokenizer.load(a.tokenizer)
        ids = tok.encode(a.text)
        print(ids)
        print([tok.id_to_token[i] for i in ids])
        print(repr(tok.decode(ids)))


if __name__ == '__main__':
    main()
