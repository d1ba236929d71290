// lavi chat --model DIR [--system TEXT] [--image FILE]: a multi-turn conversation rendered with the model's own
// chat template (tokenizer_config.json chat_template, chat_template.jinja or .json), the answers streamed. Turns
// come from stdin, one line each: at a terminal with a prompt, from a pipe or file silently (then each answer is
// printed on its own line). Sampling follows generation_config.json unless flags say otherwise.
//
// Exit status: 0 at the end of input, 1 runtime error, 2 usage error, 130 interrupted.

import { createInterface } from 'node:readline';
import '../../../backends/index.js';
import { releaseAllBackends } from '../../../core/registry.js';
import { resolveBackendArg } from '../backends.js';
import type { ChatMessage } from '../../text/chat-template.js';
import { LaviRuntime, type RequestOptions } from '../runtime.js';
import { parseUsage, samplingFlags, SAMPLING_FLAGS, SAMPLING_HELP, UsageError } from './args.js';

const HELP = `usage: lavi chat --model DIR [options]

A conversation with the model, using its own chat template; one user turn per line of stdin.

options:
  --model DIR         a model folder with tokenizer.json and a chat template
  --system TEXT       a system message first
  --image FILE        an image that comes with the first turn (vision models)
  --backend NAME      run on this backend (default: the best available one)
${SAMPLING_HELP}
                      (default: generation_config.json's sampling, --max-tokens 256)
  --greedy            greedy decoding whatever generation_config.json says

exit status: 0 at the end of input, 1 runtime error, 2 usage error, 130 interrupted`;

export async function run(args: string[]): Promise<number> {
  let model: string | undefined, backend: string | undefined, system: string | undefined, image: string | null;
  let request: RequestOptions;
  try {
    const p = parseUsage(args, { boolean: ['help', 'greedy'], string: ['model', 'backend', 'system', 'image', ...SAMPLING_FLAGS] }, 'lavi chat');
    if (p.flags.has('help')) {
      console.log(HELP);
      return 0;
    }
    if (p.positional.length) throw new UsageError(`unexpected argument '${p.positional[0]}' (turns come from stdin)`);
    model = p.flags.get('model') as string | undefined;
    backend = resolveBackendArg(p.flags.get('backend') as string | undefined);
    system = p.flags.get('system') as string | undefined;
    image = (p.flags.get('image') as string | undefined) ?? null;
    request = { maxNewTokens: 256, ...samplingFlags(p), modelDefaults: !p.flags.has('greedy') };
    if (p.flags.has('greedy')) request.temperature = 0;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`lavi chat: ${e.message} (see 'lavi chat --help')`);
    return 2;
  }
  const tty = process.stdin.isTTY === true;
  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted'));
  let rt: LaviRuntime | null = null;
  try {
    rt = await LaviRuntime.create({ modelDir: model, backend });
    if (!rt.template) {
      console.error(`lavi chat: ${model ?? 'the model'} has no chat template (tokenizer_config.json chat_template, chat_template.jinja or chat_template.json); use 'lavi generate --prompt' for raw text`);
      return 1;
    }
    const messages: ChatMessage[] = system !== undefined ? [{ role: 'system', content: system }] : [];
    const rl = createInterface({ input: process.stdin, terminal: tty });
    process.once('SIGINT', onSigint);
    if (tty) process.stdout.write('> ');
    let first = true;
    for await (const line of rl) {
      if (ac.signal.aborted) break;
      if (line.trim() === '') {
        if (tty) process.stdout.write('> ');
        continue;
      }
      const withImage = first && image !== null && rt.engine.imageTokenId !== null;
      messages.push({ role: 'user', content: withImage ? [{ type: 'image' }, { type: 'text', text: line }] : line });
      let started = false;
      const r = await rt.chat(messages, {
        ...request,
        image: first ? image : null,
        signal: ac.signal,
        onToken: (text) => {
          const out = started ? text : text.trimStart();
          if (out) started = true;
          process.stdout.write(out);
        },
      });
      first = false;
      process.stdout.write('\n');
      messages.push({ role: 'assistant', content: r.answer });
      if (r.stopReason === 'aborted') return 130;
      if (tty) process.stdout.write('> ');
    }
    return 0;
  } catch (e) {
    console.error(`lavi chat: ${(e as Error).message.split('\n')[0]}`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSigint);
    rt?.dispose();
    await releaseAllBackends();
  }
}
