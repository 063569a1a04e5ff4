import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runSoak, type SoakPlan, type SoakRun } from '../../bench/soak-run.js';
import { lastOverFirst, leakVerdict } from '../../bench/soak-verdict.js';
import { dockerAvailable } from '../helpers/docker.js';

const root = path.resolve(import.meta.dirname, '..', '..');

function size(name: string, fallback: number): number {
  const value = Number(process.env[name] || fallback);
  if (!Number.isInteger(value) || value < 10) throw new Error(`${name} must be a whole number of at least 10, not ${process.env[name]}`);
  return value;
}

const NOOP_TASKS = size('ASP_SOAK_TASKS', 1000);
const HEAVY_TASKS = size('ASP_SOAK_HEAVY_TASKS', 200);
const CONCURRENCY = 4;
/** A second a task and two minutes over: at concurrency 4 on 2 cores a no-op task takes 0.2-0.4 s, a heavy one 0.3-0.6 s. */
const timeoutFor = (tasks: number) => tasks * 1000 + 120_000;
/** A batch still running a minute before the test's timeout is interrupted (asp cleans up), so nothing outlives the test. */
const deadline = (tasks: number) => AbortSignal.timeout(timeoutFor(tasks) - 60_000);

/** What every soak must show, whatever its tasks: the batch whole, and flat, linear and clean by the leak verdict. */
function expectSound(run: SoakRun): void {
  const verdict = leakVerdict(run);
  // The figures in the log, so a CI run says what it measured and not only that it passed.
  console.log(
    `soak ${run.plan.kind}, ${run.plan.tasks} tasks: ${(run.durationMs / 1000).toFixed(1)} s, ${run.samples.length} samples\n${verdict.checks.map((check) => `  ${check.ok ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}`).join('\n')}`,
  );
  expect(run.exitCode, run.stderrTail).toBe(0);
  const tasks = run.plan.tasks;
  expect(run.report).toMatchObject({ total: tasks, passed: tasks, failed: 0, errors: 0, interrupted: 0, notRun: 0, concurrency: CONCURRENCY, exitCode: 0 });
  expect(run.report?.tasks.map((task) => [task.key, task.status, task.attempts])).toEqual(run.keys.map((key) => [key, 'passed', 1]));
  // Every task in the journal exactly once, ended passed.
  expect(run.ends.map((end) => `${end.key} ${end.status}`).sort()).toEqual(run.keys.map((key) => `${key} passed`).sort());
  expect(run.leftovers).toEqual({ containers: [], volumes: [] });
  expect(run.problems).toEqual([]);
  expect(verdict.checks.filter((check) => !check.ok)).toEqual([]);
  // Throughput is bench/soak's figure (its goal: the last hundred within 10% of the first); on a shared machine a
  // test can only catch a collapse, such as per-task work that grows with the tasks already run.
  expect(lastOverFirst(run.startedAt, run.ends, 100).ratio).toBeGreaterThan(1 / 3);
}

describe.skipIf(!dockerAvailable)('asp batch under load (soak)', () => {
  it(
    `runs ${NOOP_TASKS} no-op tasks at concurrency ${CONCURRENCY}: supervisor RSS and descriptors flat, journal and trace store linear, nothing left`,
    async () => {
      const plan: SoakPlan = { kind: 'noop', tasks: NOOP_TASKS, concurrency: CONCURRENCY };
      expectSound(await runSoak(plan, { root, signal: deadline(NOOP_TASKS) }));
    },
    timeoutFor(NOOP_TASKS),
  );

  it(
    `runs ${HEAVY_TASKS} tasks with a 2 MiB workspace and 1 MiB of output each: the same, and every workspace arrived whole`,
    async () => {
      const plan: SoakPlan = { kind: 'heavy', tasks: HEAVY_TASKS, concurrency: CONCURRENCY };
      // The step checks the workspace's hash before it writes its output, and the soak checks each step record's
      // output count: a task whose workspace or output did not make it through is not passed.
      expectSound(await runSoak(plan, { root, signal: deadline(HEAVY_TASKS) }));
    },
    timeoutFor(HEAVY_TASKS),
  );
});
