/**
 * bench/startup (issue 22): what asp costs before it does anything. Medians of ROUNDS (default 15) alternated runs of
 * `node -e 0`, `asp --version`, `asp run --help`, and the time from process start to the first Engine API call of an
 * `asp run` (against a unix socket the bench serves, which notes the first request and answers 503 to it), for the
 * bundled CLI that ships (dist/cli/asp.cjs) and, in the same rounds, the tree of modules tsc writes
 * (dist/src/cli/main.js, what `asp` was before it was bundled). Goal: `asp run --help` within 100 ms of `node -e 0`.
 * Needs `npm run build`; no Docker daemon (the engine is the bench's socket).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROUNDS = Number(process.env.ROUNDS ?? 15);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const entries = { bundle: path.join(root, 'dist', 'cli', 'asp.cjs'), tree: path.join(root, 'dist', 'src', 'cli', 'main.js') };
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/git-fixture.d.mts; the path is computed because the bench runs from dist/bench, where tsc copies no .mjs
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');

const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-startup-'));
const repo = path.join(scratch, 'repo');
makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
const env = { PATH: process.env.PATH, HOME: scratch, ASP_HOME: path.join(scratch, 'home'), ASP_WORKSPACES: path.join(scratch, 'workspaces') };

function timed(args: string[]): number {
  const started = performance.now();
  const result = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - started;
  if (result.status !== 0) throw new Error(`node ${args.join(' ')} exited ${result.status}: ${result.stderr.toString().slice(-300)}`);
  return ms;
}

/** Milliseconds from spawning `asp run` to its first request on the engine's socket; the run is then killed. */
async function toFirstEngineCall(entry: string, round: number): Promise<number> {
  const socket = path.join(scratch, `engine-${round}.sock`);
  let first: (() => void) | undefined;
  const reached = new Promise<void>((resolve) => (first = resolve));
  const server = http.createServer((_request, response) => {
    first?.();
    response.writeHead(503).end();
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const started = performance.now();
  const child = spawn(process.execPath, [entry, 'run', '--repo', repo, '--step', 't=true'], { env: { ...env, DOCKER_HOST: `unix://${socket}` }, stdio: 'ignore' });
  const timeout = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const ended = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await Promise.race([reached, ended]);
  const ms = performance.now() - started;
  child.kill('SIGKILL');
  await ended;
  clearTimeout(timeout);
  server.close();
  return ms;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};

const samples: Record<string, number[]> = {};
const add = (name: string, ms: number) => (samples[name] ??= []).push(ms);
// One warm-up of each, for the page cache.
for (const entry of Object.values(entries)) timed([entry, '--version']);
for (let round = 0; round < ROUNDS; round += 1) {
  add('node -e 0', timed(['-e', '0']));
  for (const [kind, entry] of Object.entries(entries)) {
    add(`${kind}: asp --version`, timed([entry, '--version']));
    add(`${kind}: asp run --help`, timed([entry, 'run', '--help']));
    add(`${kind}: asp run, start to first Engine API call`, await toFirstEngineCall(entry, round));
  }
}
rmSync(scratch, { recursive: true, force: true });

const baseline = median(samples['node -e 0'] ?? []);
console.log(`bench/startup: medians of ${ROUNDS} alternated rounds on ${os.availableParallelism()} cores (load average ${os.loadavg()[0]?.toFixed(1)})`);
console.log(`  ${'node -e 0'.padEnd(52)} ${baseline.toFixed(0).padStart(5)} ms`);
for (const [name, values] of Object.entries(samples)) {
  if (name === 'node -e 0') continue;
  const ms = median(values);
  console.log(`  ${name.padEnd(52)} ${ms.toFixed(0).padStart(5)} ms  (+${(ms - baseline).toFixed(0)} ms over node -e 0)`);
}
const help = median(samples['bundle: asp run --help'] ?? []) - baseline;
console.log(`goal: asp run --help within 100 ms of node -e 0: ${help.toFixed(0)} ms, ${help <= 100 ? 'met' : 'missed'}`);
