// lavi serve: the engine as a service.
//   --stdio: a subprocess speaking length-prefixed msgpack on stdin/stdout (models/PROTOCOL.md). Logs go to
//            stderr; stdout carries only frames.
//   --http:  an OpenAI-compatible HTTP server (models/HTTP.md), on 127.0.0.1:8080 unless told otherwise.

import { releaseAllBackends } from '../../../core/registry.js';
import { DEFAULT_MAX_FRAME, serveStdio } from '../serve.js';
import { intFlag, parseUsage, UsageError } from './args.js';
import { resolveBackendArg } from '../backends.js';

const HELP = `usage: lavi serve --stdio [--model DIR] [--backend NAME] [--max-frame-bytes N] [--frame-timeout-ms N]
       lavi serve --http [--host 127.0.0.1] [--port 8080] [--model DIR] [--backend NAME] [--allow-files DIR]
                         [--max-body-bytes N] [--queue N]

  --stdio             length-prefixed msgpack on stdin/stdout (models/PROTOCOL.md)
  --http              OpenAI-compatible HTTP: POST /v1/chat/completions, GET /v1/models, GET /health (models/HTTP.md)
  --model DIR         the model folder (default: the bundled LaVi); loaded at start-up
  --backend NAME      the backend (default: the best available; 'lavi backends' lists them)
  --host H            address to listen on (default 127.0.0.1: this machine only)
  --port P            TCP port (default 8080; 0 picks a free one, printed on stderr)
  --allow-files DIR   let image_url name local files, only under DIR (default: data: URLs only)
  --max-body-bytes N  largest request body (default 32 MiB; larger gets 413)
  --queue N           requests waiting behind the running generation (default 8; more get 503)
  --max-frame-bytes N, --frame-timeout-ms N   stdio framing limits (default 32 MiB, 2000 ms)`;

export async function run(args: string[]): Promise<number> {
  const p = parseUsage(args, {
    boolean: ['stdio', 'http', 'help', 'verbose'],
    string: ['model', 'backend', 'max-frame-bytes', 'frame-timeout-ms', 'host', 'port', 'allow-files', 'max-body-bytes', 'queue'],
  }, 'lavi serve');
  if (p.flags.has('help')) {
    console.log(HELP);
    return 0;
  }
  if (p.flags.has('stdio') === p.flags.has('http')) throw new UsageError('give one of --stdio or --http');
  if (p.positional.length) throw new UsageError(`unexpected argument '${p.positional[0]}'`);
  const backend = resolveBackendArg(p.flags.get('backend') as string | undefined);
  const modelDir = p.flags.get('model') as string | undefined;
  if (p.flags.has('http')) {
    for (const k of ['max-frame-bytes', 'frame-timeout-ms']) if (p.flags.has(k)) throw new UsageError(`--${k} is for --stdio`);
    const { serveHttp } = await import('../http.js');
    const port = intFlag(p, 'port', 8080, 'lavi serve');
    if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
    const code = await serveHttp({
      host: (p.flags.get('host') as string | undefined) ?? '127.0.0.1',
      port,
      modelDir,
      backend,
      allowFiles: p.flags.get('allow-files') as string | undefined,
      maxBodyBytes: intFlag(p, 'max-body-bytes', 32 * 1024 * 1024, 'lavi serve'),
      queue: intFlag(p, 'queue', 8, 'lavi serve'),
      signals: true,
    });
    await releaseAllBackends();
    return code;
  }
  for (const k of ['host', 'port', 'allow-files', 'max-body-bytes', 'queue']) if (p.flags.has(k)) throw new UsageError(`--${k} is for --http`);
  // Anything the library prints must not corrupt the frame stream.
  console.log = console.error;
  console.info = console.error;
  const code = await serveStdio({
    input: process.stdin,
    output: process.stdout,
    modelDir,
    backend,
    maxFrameBytes: intFlag(p, 'max-frame-bytes', DEFAULT_MAX_FRAME, 'lavi serve'),
    frameTimeoutMs: intFlag(p, 'frame-timeout-ms', 2000, 'lavi serve'),
    exitOnLoadError: true,
  });
  process.stdin.pause();
  await releaseAllBackends();
  await new Promise<void>((r) => process.stdout.write('', () => r()));
  return code;
}
