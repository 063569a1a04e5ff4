// After tsc: bundles the CLI into what ships (dist/cli/asp.cjs, the `asp` npm links, with a chunk per command and per
// lazily loaded part), and the in-sandbox programs into one file each under dist/image/, which is what the sandbox
// image carries. One file instead of a tree of ES modules saves every container about 25-35 ms of CPU at start
// (measured: module loading through the overlay file system); the CLI's chunks save `asp run` the resolution and
// loading of some 600 modules of its own and of its dependencies.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { build } from 'rolldown';

const cli = new URL('../dist/cli/', import.meta.url);
rmSync(cli, { recursive: true, force: true });
// CommonJS chunks, so that V8's code cache can be used on Node 20 (src/cli/compile-cache.ts: Node 20 has no cache
// for ES modules); asp.cjs, what the `asp` link runs, installs the cache and then loads the CLI's entry.
await build({
  input: { 'cli-main': new URL('../dist/src/cli/main.js', import.meta.url).pathname, 'compile-cache': new URL('../dist/src/cli/compile-cache.js', import.meta.url).pathname },
  platform: 'node',
  logLevel: 'warn',
  // The Kubernetes client stays a package of its own: only a k8s run loads it, and it is a tree of CommonJS
  // modules with optional requires that a bundle would have to guess at.
  external: [/^node:/, /^@kubernetes\/client-node(\/|$)/],
  output: { dir: cli.pathname, format: 'cjs', entryFileNames: '[name].cjs', chunkFileNames: 'chunks/[name]-[hash].cjs', sourcemap: true },
});
// asp.cjs is what the `asp` link runs: CommonJS, because node starting an ES module first sets up its ES loader,
// ~10 ms of every run (measured); asp.mjs, the entry of earlier builds, is kept for whatever still names it.
writeFileSync(
  new URL('asp.cjs', cli),
  [
    '#!/usr/bin/env node',
    "// Made by scripts/post-build.mjs: V8's code cache for the chunks under here (compile-cache.cjs), then the CLI.",
    "require('./compile-cache.cjs').installCompileCache(__dirname);",
    "require('./cli-main.cjs');",
    '',
  ].join('\n'),
);
writeFileSync(
  new URL('asp.mjs', cli),
  ['#!/usr/bin/env node', '// Made by scripts/post-build.mjs: the CLI is asp.cjs.', "import { createRequire } from 'node:module';", "createRequire(import.meta.url)('./asp.cjs');", ''].join('\n'),
);
for (const entry of ['asp.cjs', 'asp.mjs']) chmodSync(new URL(entry, cli), 0o755);
// Which build this is: a standby asp process (src/standby/) serves only runs of the build it has loaded.
writeFileSync(new URL('build-id', cli), `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}\n`);

const image = new URL('../dist/image/', import.meta.url);
rmSync(image, { recursive: true, force: true });
mkdirSync(image, { recursive: true });
// The runner is CommonJS: every task's container starts it, and Node starting an ES module first sets up its ES
// loader (~5 ms of CPU per task, measured in the container). The other two run once in a while and stay ES modules.
for (const [entry, file, format] of [
  ['main.js', 'asp-sandbox.cjs', 'cjs'],
  ['asp-agent.js', 'asp-agent.mjs', 'esm'],
  ['runtime-pack.js', 'asp-runtime-pack.mjs', 'esm'],
]) {
  await build({
    input: new URL(`../dist/sandbox/${entry}`, import.meta.url).pathname,
    platform: 'node',
    logLevel: 'warn',
    // Only node: built-ins stay imports; the runner must not need anything the image does not have.
    external: [/^node:/],
    output: { file: new URL(file, image).pathname, format, codeSplitting: false },
  });
}
