#!/usr/bin/env node
// The `lavi` command. Each subcommand lives in models/app/commands/<name>.ts and exports
// `run(args: string[]): Promise<number>` (the exit code); they are imported lazily so `lavi cost` never loads a
// GPU driver.

const COMMANDS: Record<string, { file: string; summary: string }> = {
  ask: { file: './commands/ask.js', summary: 'ask the bundled LaVi model about an image: lavi ask <image> "<question>"' },
  eval: { file: './commands/eval.js', summary: 'accuracy and cost of LaVi vs the concat baseline on the held-out split' },
  cost: { file: './commands/cost.js', summary: 'FLOPs and memory of LaVi vs the concat baseline for a config' },
  verify: { file: './commands/verify.js', summary: 'kernel conformance: run the op table on a backend against the CPU reference' },
  bench: { file: './commands/bench.js', summary: 'op and model benchmarks' },
  serve: { file: './commands/serve.js', summary: 'serve the engine over stdio (length-prefixed msgpack)' },
  trace: { file: './commands/trace.js', summary: 'record a model request as an op trace' },
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    const err = e as Error & { code?: string };
    // Our own errors are user-facing: print the message, not a stack.
    if (err && typeof err.code === 'string' && err.name?.endsWith('Error') && 'code' in err && err.constructor?.name !== 'Error') {
      console.error(`lavi: ${err.message}`);
    } else {
      console.error(err?.stack ?? String(e));
    }
    process.exitCode = 1;
  },
);
