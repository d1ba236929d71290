// Ask the bundled LaVi model a question about an image through the library API.
//
//   npx tsc -p tsconfig.json
//   node dist/examples/ask.js [image] [question]
//
// Defaults: examples/images/shapes3.png and "What color is the triangle?".

import { fileURLToPath } from 'node:url';
// The package's public entry point (self-reference through package.json "exports"), as an application would.
import { LaviRuntime, releaseAllBackends } from 'lavi-ts';

// Paths relative to the package, so the example runs from any working directory.
const image = process.argv[2] ?? fileURLToPath(new URL('../../examples/images/shapes3.png', import.meta.url));
const question = process.argv[3] ?? 'What color is the triangle?';

// Load the bundled checkpoint (models/weights/lavi-vqa) on the best available backend. Pass
// { modelDir, backend: 'cpu' } to choose another checkpoint or backend.
const runtime = await LaviRuntime.create();
const info = runtime.info();
console.log(`${info.mode} model, ${(info.parameters.total / 1e6).toFixed(1)}M parameters, on ${info.backend.name}`);

try {
  // Stream the answer as it is generated; Ctrl-C stops between tokens.
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  process.stdout.write(`Q: ${question}\nA: `);
  const result = await runtime.ask(image, question, {
    maxNewTokens: 48,
    signal: controller.signal,
    onToken: (text) => process.stdout.write(text),
  });
  process.stdout.write('\n');

  // Timings (milliseconds) and the FLOPs the engine counted for this answer.
  const { ttftMs, tokensPerSecond } = result.timings;
  console.log(`(${result.stopReason}; first token after ${ttftMs.toFixed(0)} ms, ${tokensPerSecond.toFixed(1)} tokens/s, ` +
    `${((result.cost?.totalFlops ?? 0) / 1e9).toFixed(2)} GFLOP of which vision ${((result.cost?.visionFlops ?? 0) / 1e9).toFixed(2)})`);
} finally {
  // Free the weights, then the backends (a GPU device would otherwise keep Node alive).
  runtime.dispose();
  await releaseAllBackends();
}
