// lavi info --model DIR [--json]: what a model folder holds, read from its config and safetensors headers without
// loading any weights: family, parameters, stored dtypes, context length, tokenizer and chat template, and what a
// backend will hold in memory (f16/bf16 matrices kept packed or widened to f32).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../../core/safetensors/checkpoint.js';
import { inspectModelDir, readGenerationConfig, readLaviFolder, firstWith } from '../../loader.js';
import { expectedWeights } from '../../lavi/weights.js';
import { declareLlavaOnevision, llavaOnevisionSpecs, namesFor, parseLlavaOnevisionConfig } from '../../llava-onevision/model.js';
import { formatBytes as fmtBytes } from '../../../core/cost.js';
import { bytesOnBackend, type WeightSpec } from '../../loading/weights.js';
import { parseQwen2Config, parseTokenIds } from '../../qwen2/config.js';
import { declareQwen2, qwen2Specs } from '../../qwen2/weights.js';
import { readSiglipConfig } from '../../siglip/model.js';
import { declareSiglip, siglipSpecs } from '../../siglip/weights.js';
import { ChatTemplate } from '../../text/chat-template.js';
import { defaultModelDir } from '../runtime.js';
import { parseUsage, UsageError } from './args.js';

const HELP = `usage: lavi info [--model DIR] [--json]

Describes a model folder (default: the bundled LaVi) without loading its weights: family, parameters, stored
dtypes, context length, tokenizer and chat template, and the bytes a backend holds for the weights (f16/bf16
matrices kept packed, as the runtime does for large models, or widened to f32).`;

export interface ModelInfo {
  dir: string;
  family: string;
  architecture: string;
  parameters: number;
  storedDTypes: Record<string, number>;
  storedBytes: number;
  backendBytes: { packed: number; f32: number };
  contextLength: number | null;
  vocabSize: number | null;
  layers: number | null;
  hiddenSize: number | null;
  eosTokenIds: number[];
  tokenizer: boolean;
  chatTemplate: string | null;
  weightDirs: string[];
}

export async function describeModelDir(dir: string): Promise<ModelInfo> {
  const folder = await inspectModelDir(dir);
  let specs: WeightSpec[] = [];
  let weightDirs = [dir];
  let textDirs = [dir];
  let ctx: number | null = null, vocab: number | null = null, layers: number | null = null, hidden: number | null = null;
  let eos: number[] = [];
  const arch = Array.isArray(folder.raw.architectures) ? String(folder.raw.architectures[0]) : String(folder.raw.model_type);
  if (folder.family === 'qwen2') {
    const c = parseQwen2Config(folder.raw, folder.configPath);
    specs = qwen2Specs(declareQwen2(c));
    (ctx = c.max_position_embeddings), (vocab = c.vocab_size), (layers = c.num_hidden_layers), (hidden = c.hidden_size);
    eos = (await readGenerationConfig(dir, parseTokenIds(folder.raw, folder.configPath, c.vocab_size), c.vocab_size)).eosTokenIds;
  } else if (folder.family === 'siglip') {
    const c = await readSiglipConfig(dir);
    specs = siglipSpecs(declareSiglip(c));
    (layers = c.num_hidden_layers), (hidden = c.hidden_size);
  } else if (folder.family === 'llava-onevision') {
    const c = parseLlavaOnevisionConfig(folder.raw, folder.configPath);
    const ck = await Checkpoint.open(dir);
    try {
      specs = llavaOnevisionSpecs(declareLlavaOnevision(c, namesFor(ck.names(), `checkpoint ${dir}`)));
    } finally {
      await ck.close();
    }
    const t = c.text;
    (ctx = t.max_position_embeddings), (vocab = t.vocab_size), (layers = t.num_hidden_layers), (hidden = t.hidden_size);
    eos = (await readGenerationConfig(dir, parseTokenIds(folder.raw, folder.configPath, t.vocab_size), t.vocab_size)).eosTokenIds;
  } else if (folder.family === 'lavi') {
    const lf = await readLaviFolder(folder);
    specs = expectedWeights(lf.config);
    weightDirs = lf.weightDirs;
    textDirs = lf.textDirs;
    const t = lf.config.text_config;
    (ctx = t.max_position_embeddings), (vocab = t.vocab_size), (layers = t.num_hidden_layers), (hidden = t.hidden_size);
    eos = lf.config.eos_token_ids;
  }
  const stored = new Map<string, string>();
  const storedDTypes: Record<string, number> = {};
  let parameters = 0, storedBytes = 0;
  for (const d of weightDirs) {
    const c = await Checkpoint.open(d);
    try {
      for (const n of c.names()) {
        const e = c.entry(n);
        stored.set(n, e.dtype);
        const size = e.shape.reduce((a, b) => a * b, 1);
        parameters += size;
        storedBytes += e.byteLength;
        storedDTypes[e.dtype] = (storedDTypes[e.dtype] ?? 0) + size;
      }
    } finally {
      await c.close();
    }
  }
  const tokDir = firstWith(textDirs, 'tokenizer.json');
  let template: string | null = null;
  if (typeof folder.raw.chat_template === 'string') template = 'config.json ({question})';
  else {
    const t = ChatTemplate.find(firstWith(textDirs, 'tokenizer_config.json') ?? dir);
    template = t ? t.source : null;
  }
  return {
    dir,
    family: folder.family,
    architecture: arch,
    parameters,
    storedDTypes,
    storedBytes,
    backendBytes: { packed: bytesOnBackend(specs, (n) => stored.get(n), true), f32: bytesOnBackend(specs, (n) => stored.get(n), false) },
    contextLength: ctx,
    vocabSize: vocab,
    layers,
    hiddenSize: hidden,
    eosTokenIds: eos,
    tokenizer: tokDir !== null && existsSync(join(tokDir, 'tokenizer.json')),
    chatTemplate: template,
    weightDirs,
  };
}

export async function run(args: string[]): Promise<number> {
  let dir: string;
  let json: boolean;
  try {
    const p = parseUsage(args, { boolean: ['json', 'help'], string: ['model'] }, 'lavi info');
    if (p.flags.has('help')) {
      console.log(HELP);
      return 0;
    }
    if (p.positional.length) throw new UsageError(`unexpected argument '${p.positional[0]}' (give the folder with --model DIR)`);
    dir = (p.flags.get('model') as string | undefined) ?? defaultModelDir();
    json = p.flags.has('json');
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`lavi info: ${e.message} (see 'lavi info --help')`);
    return 2;
  }
  try {
    const i = await describeModelDir(dir);
    if (json) {
      console.log(JSON.stringify(i));
      return 0;
    }
    const params = i.parameters >= 1e9 ? `${(i.parameters / 1e9).toFixed(2)}B` : i.parameters >= 1e6 ? `${(i.parameters / 1e6).toFixed(1)}M` : `${(i.parameters / 1e3).toFixed(1)}k`;
    const lines = [
      `model:        ${i.dir}${i.weightDirs.length > 1 ? ` (assembled from ${i.weightDirs.slice(1).join(', ')})` : ''}`,
      `family:       ${i.family} (${i.architecture})`,
      `parameters:   ${params} (${Object.entries(i.storedDTypes).map(([d, n]) => `${d} ${((100 * n) / Math.max(1, i.parameters)).toFixed(0)}%`).join(', ')}; ${fmtBytes(i.storedBytes)} on disk)`,
      ...(i.layers !== null ? [`layers:       ${i.layers}, width ${i.hiddenSize}`] : []),
      ...(i.contextLength !== null ? [`context:      ${i.contextLength} tokens, vocabulary ${i.vocabSize}, stop ids ${i.eosTokenIds.join(', ') || 'none'}`] : []),
      `tokenizer:    ${i.tokenizer ? 'tokenizer.json' : 'none (token ids only: lavi generate --ids)'}`,
      `chat:         ${i.chatTemplate ?? 'no chat template'}`,
      `on a backend: ${fmtBytes(i.backendBytes.packed)} with f16/bf16 matrices kept packed, ${fmtBytes(i.backendBytes.f32)} widened to f32`,
    ];
    console.log(lines.join('\n'));
    return 0;
  } catch (e) {
    console.error(`lavi info: ${(e as Error).message.split('\n')[0]}`);
    return 1;
  }
}
