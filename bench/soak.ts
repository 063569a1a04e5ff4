/**
 * bench/soak (issue 21, load and soak): TASKS no-op tasks (default 1000) and HEAVY_TASKS tasks with a 2 MiB workspace
 * and 1 MiB of output each (default 200), each list through one `asp batch` at CONCURRENCY (default 4). Prints
 * tasks/s for each hundred with the supervisor's RSS and open descriptors over it, the throughput of the last hundred
 * against the first (goal: within 10%), journal, trace store and workspace bytes per task, and the leak verdict
 * (bench/soak-verdict.ts). Exit 1 when the verdict fails. Needs Docker and `npm run build`.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { ensureSandboxImage } from '../src/docker/sandbox-image.js';
import { runSoak, type SoakPlan, type SoakRun } from './soak-run.js';
import { cpuPerTask, DEFAULT_BOUNDS, growthPerTask, lastOverFirst, leakVerdict, median, throughputWindows } from './soak-verdict.js';

const count = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number, not ${process.env[name]}`);
  return value;
};
const TASKS = count('TASKS', 1000);
const HEAVY_TASKS = count('HEAVY_TASKS', 200);
const CONCURRENCY = count('CONCURRENCY', 4);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MiB = 1024 * 1024;

const image = await ensureSandboxImage(EngineAdapter.fromEnvironment(process.env), {});
console.log(`bench/soak: concurrency ${CONCURRENCY}, image ${image}, ${os.cpus().length} CPUs, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, load average ${os.loadavg()[0]?.toFixed(1)}`);

let failed = false;
for (const plan of [
  { kind: 'noop', tasks: TASKS, concurrency: CONCURRENCY },
  { kind: 'heavy', tasks: HEAVY_TASKS, concurrency: CONCURRENCY },
] satisfies SoakPlan[]) {
  if (plan.tasks === 0) continue;
  const run = await runSoak(plan, { root });
  failed = print(run) || failed;
}
process.exitCode = failed ? 1 : 0;

/** Prints one soak; true when its verdict failed. */
function print(run: SoakRun): boolean {
  const { plan } = run;
  const what = plan.kind === 'noop' ? 'no-op tasks (one step `true`)' : 'tasks with a 2 MiB workspace and 1 MiB of output';
  console.log(`\n${plan.tasks} ${what}: ${(run.durationMs / 1000).toFixed(1)} s, exit ${run.exitCode}, ${(plan.tasks / (run.durationMs / 1000)).toFixed(2)} tasks/s overall`);
  const size = plan.tasks >= 500 ? 100 : Math.max(10, Math.round(plan.tasks / 50) * 10);
  console.log(`  ${'tasks'.padEnd(11)} ${'tasks/s'.padStart(7)} ${'CPU ms/task'.padStart(12)}   ${'RSS MiB min/median/max'.padEnd(24)} fds min/median/max`);
  for (const window of throughputWindows(run.startedAt, run.ends, run.samples, size)) {
    const rss = window.samples.map((sample) => sample.rssBytes / MiB);
    const fds = window.samples.map((sample) => sample.fds);
    const range = (values: number[], digits: number) => (values.length ? [Math.min(...values), median(values), Math.max(...values)].map((value) => value.toFixed(digits)).join('/') : '-');
    console.log(
      `  ${`${window.from}-${window.to}`.padEnd(11)} ${window.tasksPerSecond.toFixed(2).padStart(7)} ${window.cpuMsPerTask.toFixed(0).padStart(12)}   ${range(rss, 0).padEnd(24)} ${range(fds, 0)}`,
    );
  }
  const all = run.samples;
  console.log(
    `  samples: ${all.length}; RSS ${(Math.min(...all.map((s) => s.rssBytes)) / MiB).toFixed(0)}-${(Math.max(...all.map((s) => s.rssBytes)) / MiB).toFixed(0)} MiB, fds ${Math.min(...all.map((s) => s.fds))}-${Math.max(...all.map((s) => s.fds))}`,
  );
  const throughput = lastOverFirst(run.startedAt, run.ends, 100);
  console.log(
    `  throughput, last ${throughput.size} over first ${throughput.size}: ${throughput.last.toFixed(2)} / ${throughput.first.toFixed(2)} tasks/s = ${throughput.ratio.toFixed(2)} (goal: within 10%, 0.90-1.10)`,
  );
  const cpuFirst = cpuPerTask(run.samples, 0, throughput.size);
  const cpuLast = cpuPerTask(run.samples, plan.tasks - throughput.size, plan.tasks);
  console.log(
    `  supervisor CPU (with git), last ${throughput.size} over first ${throughput.size}: ${cpuLast.toFixed(0)} / ${cpuFirst.toFixed(0)} ms/task = ${(cpuLast / cpuFirst).toFixed(2)}; load average at the end ${os.loadavg()[0]?.toFixed(1)}`,
  );
  const journal = growthPerTask(run, DEFAULT_BOUNDS, 'journalBytes');
  const traces = growthPerTask(run, DEFAULT_BOUNDS, 'traceStoreBytes');
  console.log(
    `  bytes per task: journal ${(run.final.journalBytes / plan.tasks).toFixed(0)} (first/second half ${journal.first.toFixed(0)}/${journal.second.toFixed(0)}), ` +
      `trace store ${(run.final.traceStoreBytes / plan.tasks).toFixed(0)} (${traces.first.toFixed(0)}/${traces.second.toFixed(0)}), workspaces ${(run.workspaceBytes / plan.tasks).toFixed(0)}`,
  );
  const verdict = leakVerdict(run);
  console.log(`  leak verdict: ${verdict.ok ? 'PASS' : 'FAIL'}`);
  for (const check of verdict.checks) console.log(`    ${check.ok ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}`);
  if (!verdict.ok) console.log(`  asp's stderr ends:\n${run.stderrTail}`);
  return !verdict.ok;
}
