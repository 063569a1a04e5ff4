/**
 * bench/batch (P2): 32 no-op tasks at concurrency 2 through `asp batch`, against
 * `xargs -P2 docker run --rm --network none <image> true` with the same count, in the same run.
 * Prints both throughputs and their ratio (goal: asp/docker ≥ 1.0), medians of ROUNDS (default 10) alternated runs,
 * and the same batch with `--no-prewarm` (every task makes its own sandbox) in the same rounds. Needs Docker and `npm run build`.
 *
 * Also measured, to show where the time goes: the same `docker run` with the container booting Node and nothing
 * else (`node -e 0`), which is the least any task whose in-container runner is a Node program can cost; and the CPU
 * each contender burns per task, machine-wide (from /proc/stat), since at concurrency 2 on 2 cores CPU is the limit.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { ensureSandboxImage } from '../src/docker/sandbox-image.js';

const TASKS = Number(process.env.TASKS ?? 32);
const CONCURRENCY = 2;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'cli', 'asp.cjs');
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/git-fixture.d.mts; the path is computed because the bench runs from dist/bench, where tsc copies no .mjs
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');

interface Timing {
  ms: number;
  /** CPU seconds spent machine-wide while it ran (all processes, kernel included); undefined off Linux. */
  cpuSeconds: number | undefined;
}

/** Busy jiffies of all CPUs (user, nice, system, irq, softirq), or undefined where /proc/stat is not there. */
function busyTicks(): number | undefined {
  if (!existsSync('/proc/stat')) return undefined;
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  return [0, 1, 2, 5, 6].reduce((sum, index) => sum + (fields[index] ?? 0), 0);
}

function timed(command: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Timing {
  const busyBefore = busyTicks();
  const started = performance.now();
  const result = spawnSync(command, args, { env, input, stdio: ['pipe', 'ignore', 'pipe'] });
  const ms = performance.now() - started;
  const busyAfter = busyTicks();
  if (result.status !== 0) throw new Error(`${command} exited ${result.status}: ${result.stderr.toString().slice(-500)}`);
  // USER_HZ is 100 on every Linux this runs on.
  return { ms, cpuSeconds: busyBefore === undefined || busyAfter === undefined ? undefined : (busyAfter - busyBefore) / 100 };
}

const better = (a: Timing, b: Timing): Timing => (a.ms <= b.ms ? a : b);

const image = await ensureSandboxImage(EngineAdapter.fromEnvironment(process.env), {});
const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-batch-'));
const repo = path.join(scratch, 'repo');
makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
const tasks = Array.from({ length: TASKS }, (_, index) => JSON.stringify({ id: `noop-${index}`, repo, steps: [{ name: 'noop', run: 'true' }] }));

const runAsp = (round: string, extra: string[] = []) => {
  const file = path.join(scratch, `tasks-${round}.jsonl`);
  writeFileSync(file, tasks.join('\n') + '\n');
  const env = { ...process.env, CI: 'true', ASP_HOME: path.join(scratch, `home-${round}`), ASP_WORKSPACES: path.join(scratch, `ws-${round}`) };
  return timed(process.execPath, [cli, 'batch', file, '--concurrency', String(CONCURRENCY), '--json', ...extra], env);
};
const runDocker = (...command: string[]) =>
  timed(
    'xargs',
    ['-P', String(CONCURRENCY), '-I{}', 'docker', 'run', '--rm', '--network', 'none', image, ...command],
    process.env,
    Array.from({ length: TASKS }, (_, index) => String(index)).join('\n'),
  );

// Alternated, ROUNDS each, and the median of each kept: the machine is shared and noisy.
const ROUNDS = Number(process.env.ROUNDS ?? 10);
const runs = { asp: [] as Timing[], cold: [] as Timing[], docker: [] as Timing[], node: [] as Timing[] };
for (let round = 0; round < ROUNDS; round += 1) {
  runs.asp.push(runAsp(`a${round}`));
  runs.cold.push(runAsp(`c${round}`, ['--no-prewarm']));
  runs.docker.push(runDocker('true'));
  if (round < 2) runs.node.push(runDocker('node', '-e', '0'));
}
const middle = (timings: Timing[]): Timing => [...timings].sort((a, b) => a.ms - b.ms)[Math.floor((timings.length - 1) / 2)] ?? { ms: Number.NaN, cpuSeconds: undefined };
const asp = middle(runs.asp);
const cold = middle(runs.cold);
const docker = middle(runs.docker);
const nodeFloor = better(runs.node[0] ?? docker, runs.node[1] ?? docker);
rmSync(scratch, { recursive: true, force: true });

const rate = (timing: Timing) => TASKS / (timing.ms / 1000);
const line = (label: string, timing: Timing) => {
  const cpu = timing.cpuSeconds === undefined ? '' : `, ${((timing.cpuSeconds * 1000) / TASKS).toFixed(0)} ms CPU/task`;
  console.log(`  ${label.padEnd(40)} ${(timing.ms / 1000).toFixed(2)} s  (${rate(timing).toFixed(2)} tasks/s${cpu})`);
};
console.log(`bench/batch: ${TASKS} no-op tasks, concurrency ${CONCURRENCY}, image ${image}, ${os.cpus().length} CPUs, medians of ${ROUNDS}`);
line('asp batch:', asp);
line('asp batch --no-prewarm:', cold);
line('xargs -P2 docker run --rm … true:', docker);
line('xargs -P2 docker run --rm … node -e 0:', nodeFloor);
console.log(`  throughput ratio asp/docker: ${(rate(asp) / rate(docker)).toFixed(2)} (goal ≥ 1.00); without prewarming ${(rate(cold) / rate(docker)).toFixed(2)}`);
console.log(`  throughput ratio asp/(docker run booting Node): ${(rate(asp) / rate(nodeFloor)).toFixed(2)}`);
