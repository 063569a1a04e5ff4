#!/usr/bin/env node
/**
 * The `asp` entry. `asp run` is first offered to a standby asp process of a warm pool (src/cli/standby-server.ts), which has
 * everything a run needs loaded already; when none takes it (none up, the usual case), or for any other command,
 * asp runs here. No top-level await: the CLI ships as CommonJS chunks (scripts/post-build.mjs, for V8's code cache).
 */
async function main(): Promise<void> {
  // A pool keeper's standby (hidden: the keeper starts it, with an IPC channel): it waits for an `asp run` to take over.
  if (process.argv[2] === 'pool' && process.argv[3] === 'standby' && process.argv.length === 4) {
    process.exitCode = await (await import('./standby-server.js')).runStandby();
    return;
  }
  if (process.argv[2] === 'run' && !process.argv.some((arg) => arg === '--help' || arg === '-h')) {
    const served = await (await import('./standby-client.js')).runOnStandby(process.argv.slice(2));
    if (served !== undefined) {
      process.exitCode = served;
      return;
    }
  }
  await (await import('./cli-program.js')).runCli(process.argv);
}

main().catch((error: unknown) => {
  process.stderr.write(`asp: error: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 3;
});
