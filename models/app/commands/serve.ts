// lavi serve --stdio: the engine as a subprocess speaking length-prefixed msgpack on stdin/stdout
// (models/PROTOCOL.md). Logs go to stderr; stdout carries only frames.
//
//   lavi serve --stdio [--model DIR] [--backend NAME] [--max-frame-bytes N] [--frame-timeout-ms N]

import { ValueError } from '../../../core/errors.js';
import { releaseAllBackends } from '../../../core/registry.js';
import { DEFAULT_MAX_FRAME, serveStdio } from '../serve.js';
import { intFlag, parseArgs } from './args.js';

export async function run(args: string[]): Promise<number> {
  const p = parseArgs(args, { boolean: ['stdio', 'help'], string: ['model', 'backend', 'max-frame-bytes', 'frame-timeout-ms'] }, 'serve');
  if (p.flags.has('help') || !p.flags.has('stdio')) {
    console.log('usage: lavi serve --stdio [--model DIR] [--backend NAME] [--max-frame-bytes N] [--frame-timeout-ms N]\n\nProtocol: models/PROTOCOL.md');
    return p.flags.has('help') ? 0 : 2;
  }
  if (p.positional.length) throw new ValueError(`serve: unexpected argument ${p.positional[0]}`);
  // Anything the library prints must not corrupt the frame stream.
  console.log = console.error;
  console.info = console.error;
  const code = await serveStdio({
    input: process.stdin,
    output: process.stdout,
    modelDir: p.flags.get('model') as string | undefined,
    backend: p.flags.get('backend') as string | undefined,
    maxFrameBytes: intFlag(p, 'max-frame-bytes', DEFAULT_MAX_FRAME, 'serve'),
    frameTimeoutMs: intFlag(p, 'frame-timeout-ms', 2000, 'serve'),
  });
  process.stdin.pause();
  await releaseAllBackends();
  await new Promise<void>((r) => process.stdout.write('', () => r()));
  return code;
}
