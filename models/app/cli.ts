#!/usr/bin/env node
// The `lavi` command. Each subcommand lives in models/app/commands/<name>.ts and exports
// `run(args: string[]): Promise<number>` (the exit code); they are imported lazily so `lavi cost` never loads a
// GPU driver.

const COMMANDS: Record<string, { file: string; summary: string }> = {
  ask: { file: './commands/ask.js', summary: 'ask a vision model about an image: lavi ask <image> "<question>" [--model DIR]' },
  generate: { file: './commands/generate.js', summary: 'raw generation: lavi generate --model DIR (--prompt TEXT | --ids 1,2,3) [--json]' },
  chat: { file: './commands/chat.js', summary: "multi-turn chat with the model's own chat template: lavi chat --model DIR" },
  info: { file: './commands/info.js', summary: 'what a model folder holds: family, parameters, dtypes, context, memory' },
  eval: { file: './commands/eval.js', summary: 'accuracy and cost of LaVi vs the concat baseline on the held-out split' },
  cost: { file: './commands/cost.js', summary: 'FLOPs and memory of LaVi vs the concat baseline for a config' },
  bench: { file: './commands/bench.js', summary: 'time LaVi vs concat (random weights, wasm): vision, K/U, prefill, TTFT, decode, peak memory' },
  verify: { file: './commands/verify.js', summary: 'kernel conformance: run the op table on a backend against the CPU reference' },
  serve: { file: './commands/serve.js', summary: 'serve a model: OpenAI-compatible HTTP (--http) or msgpack over stdio (--stdio)' },
  trace: { file: './commands/trace.js', summary: 'record a model request as an op trace' },
  backends: { file: './commands/backends.js', summary: 'which backends run here (and why the others do not)' },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(8)} ${c.summary}`);
  return `usage: lavi <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'lavi <command> --help' for a command's options.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    console.log(`lavi ${pkg.version}`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`lavi: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  let mod: { run: (args: string[]) => Promise<number> };
  try {
    mod = await import(cmd.file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(cmd.file.slice(2))) {
      console.error(`lavi: '${name}' is not available in this build yet`);
      return 2;
    }
    throw e;
  }
  return mod.run(rest);
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const err = e as Error & { code?: string };
    const name = argv[0] ?? '';
    const usage = err?.constructor?.name === 'UsageError';
    // Our own errors are user-facing: print the message, not a stack.
    const ours = usage || (err && typeof err.code === 'string' && err.name?.endsWith('Error') && err.constructor?.name !== 'Error');
    // Messages may carry their command's name already ("lavi cost: ...", "verify: ..."): say it once.
    const msg = ours ? String(err.message).replace(new RegExp(`^(lavi )?${name}( [a-z]+)?: `), '') : '';
    const where = COMMANDS[name] ? `lavi ${name}` : 'lavi';
    if (ours && argv.includes('--json')) {
      console.log(JSON.stringify({ error: { code: usage ? 'usage' : err.code, message: msg } }));
    }
    if (usage) console.error(`${where}: ${msg} (see '${where} --help')`);
    else if (ours) console.error(`${where}: ${msg}`);
    else console.error(err?.stack ?? String(e));
    process.exitCode = usage ? 2 : 1;
  },
);
