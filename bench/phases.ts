/**
 * bench/phases (issue 22): where one `asp run` with a no-op step spends its time, phase by phase, read from the trace
 * of each of RUNS (default 50) runs: process start to the task's start (module loading, settings, the sweep's start),
 * clone, image, container-create (volume and container, read back), sandbox-start (attach and start), runner-boot
 * (until the runner's hello), volume-fill (the feed), the step, copy-out, fetch-changes, cleanup (removal), and the
 * tail from the task's end to the process's exit (trace write, result, exit). Phases overlap where asp runs them side
 * by side (the clone with the sandbox's): each row is that phase's own median, the last row the wall time's.
 * With `--pool` (or POOL=1) every run claims a warm sandbox of a pool the bench starts (and ends): the create, start
 * and boot rows are then gone, replaced by the claim. Needs a Docker daemon and `npm run build`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';

const RUNS = Number(process.env.RUNS ?? 50);
const POOL = process.argv.includes('--pool') || process.env.POOL === '1';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'cli', 'asp.cjs');
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/git-fixture.d.mts; the path is computed because the bench runs from dist/bench, where tsc copies no .mjs
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');

const resultShape = z.object({ status: z.string(), tracePath: z.string() });
const traceShape = z.object({ observations: z.array(z.object({ name: z.string(), startTime: z.string(), endTime: z.string().nullable(), parentObservationId: z.string().nullable() })) });

const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-phases-'));
const repo = path.join(scratch, 'repo');
makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
const env = { ...process.env, ASP_WORKSPACES: path.join(scratch, 'ws') };

function asp(args: string[]): { stdout: string; startedAt: number; endedAt: number } {
  const startedAt = Date.now();
  const result = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const endedAt = Date.now();
  if (result.status !== 0) throw new Error(`asp ${args.join(' ')} exited ${result.status}: ${result.stderr.slice(-500)}`);
  return { stdout: result.stdout, startedAt, endedAt };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
};
const percentile = (values: number[], share: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * share))] ?? Number.NaN;

const rows = new Map<string, number[]>();
const add = (name: string, ms: number) => rows.set(name, [...(rows.get(name) ?? []), ms]);

if (POOL) asp(['pool', 'up', '--size', '2', '--ttl', '10m']);
try {
  // One warm-up: page cache, image layers.
  asp(['run', '--repo', repo, '--task', 'bench', '--step', 'noop=true', '--json']);
  for (let run = 0; run < RUNS; run += 1) {
    if (POOL) asp(['pool', 'up', '--size', '2', '--ttl', '10m']);
    const { stdout, startedAt, endedAt } = asp(['run', '--repo', repo, '--task', 'bench', '--step', 'noop=true', '--json']);
    const result = resultShape.parse(JSON.parse(stdout));
    if (result.status !== 'passed') throw new Error(`run ${run} ${result.status}`);
    const trace = traceShape.parse(JSON.parse(readFileSync(result.tracePath, 'utf8')));
    const task = trace.observations.find((observation) => observation.parentObservationId === null);
    if (!task?.endTime) throw new Error('the trace has no finished root span');
    const at = (iso: string) => new Date(iso).getTime();
    add('start → task start', at(task.startTime) - startedAt);
    for (const observation of trace.observations) {
      if (observation === task || !observation.endTime) continue;
      add(observation.name.replace(/^host:/, ''), at(observation.endTime) - at(observation.startTime));
    }
    add('task end → exit', endedAt - at(task.endTime));
    add('wall', endedAt - startedAt);
  }
} finally {
  if (POOL) asp(['pool', 'down']);
  rmSync(scratch, { recursive: true, force: true });
}

console.log(`bench/phases: ${RUNS} runs of asp run with one no-op step${POOL ? ', each claiming a warm sandbox (asp pool up --size 2)' : ''}`);
console.log(`  ${'phase'.padEnd(22)} ${'median'.padStart(7)} ${'p90'.padStart(7)}`);
for (const [name, values] of rows) console.log(`  ${name.padEnd(22)} ${median(values).toFixed(0).padStart(4)} ms ${percentile(values, 0.9).toFixed(0).padStart(4)} ms`);
