import type { Clock } from '../../src/core/clock.js';
import type { TaskStatus, TraceDocument } from '../../src/tracing/trace-model.js';
import { TraceRecorder } from '../../src/tracing/trace-recorder.js';

/** A clock that moves only when told to: traces built with it have exact, checkable timings. */
export function manualClock(start = Date.parse('2026-08-01T10:00:00.000Z')): Clock & { advance(ms: number): void } {
  let now = start;
  return { now: () => new Date(now), monotonicMs: () => now - start, advance: (ms) => (now += ms) };
}

export interface FixtureStep {
  name: string;
  exitCode?: number;
  durationMs?: number;
  output?: string;
  generation?: { model: string; input: number; output: number; costUsd?: number };
}

/**
 * A finished trace as the supervisor would build it: host phases, steps with output and exit codes, generations;
 * built through the real TraceRecorder, so the exporter sees exactly what a run produces.
 */
export async function traceFixture(options: { taskId?: string; runId?: string; steps?: FixtureStep[]; status?: TaskStatus; clock?: ReturnType<typeof manualClock> } = {}): Promise<TraceDocument> {
  const clock = options.clock ?? manualClock();
  const startedAt = clock.now().getTime();
  const steps = options.steps ?? [
    { name: 'plan', durationMs: 300, output: 'wrote planning.json\n', generation: { model: 'gpt-test', input: 1200, output: 300, costUsd: 0.0125 } },
    { name: 'test', durationMs: 1500, output: '3/3 tests passed\n' },
    { name: 'review', durationMs: 200, output: 'wrote code_review.json\n', generation: { model: 'gpt-test', input: 800, output: 100, costUsd: 0.0075 } },
  ];
  const recorder = new TraceRecorder(
    {
      taskId: options.taskId ?? 'task-fixture',
      runId: options.runId ?? 'run-1',
      task: 'fix the auth bug',
      repo: '/repos/app',
      ref: undefined,
      workspacePath: `/tmp/asp-workspaces/${options.taskId ?? 'task-fixture'}`,
      limits: { timeout_ms: 1_800_000, memory_bytes: 2 * 1024 ** 3, cpus: 1, pids: 512 },
    },
    clock,
  );
  const phase = (name: string, ms: number) =>
    recorder.phase(name, async () => {
      clock.advance(ms);
    });
  await phase('clone', 120);
  recorder.setSource('0123456789abcdef0123456789abcdef01234567', 'main');
  recorder.setImage('asp-sandbox:test');
  await phase('volume-fill', 40);
  for (const step of steps) {
    recorder.onMessage({ type: 'step.start', step: step.name, run: `node tools/${step.name}.js`, timeoutMs: 60_000, at: clock.now().toISOString() });
    if (step.output) recorder.onMessage({ type: 'step.log', step: step.name, stream: 'stdout', data: step.output });
    if (step.generation) {
      const { model, input, output, costUsd } = step.generation;
      recorder.onMessage({ type: 'generation', step: step.name, model, usage: { input, output, total: input + output }, ...(costUsd !== undefined ? { costUsd } : {}) });
    }
    clock.advance(step.durationMs ?? 100);
    recorder.onMessage({ type: 'step.end', step: step.name, exitCode: step.exitCode ?? 0, durationMs: step.durationMs ?? 100 });
  }
  await phase('copy-out', 30);
  await phase('cleanup', 60);
  const failed = steps.some((step) => (step.exitCode ?? 0) !== 0);
  const status = options.status ?? (failed ? 'failed' : 'passed');
  return recorder.finish({ status, exitCode: status === 'passed' ? 0 : 1, durationMs: clock.now().getTime() - startedAt });
}

/** A run of `count` observations in all (root, steps and a generation under each): for size and speed checks. */
export function largeTraceFixture(count: number): Promise<TraceDocument> {
  const steps: FixtureStep[] = [];
  // Each step adds a span and a generation; the root and four host phases make up the rest.
  for (let index = 0; steps.length * 2 < count - 5; index += 1) {
    steps.push({ name: `step-${index}`, durationMs: 5, output: `step ${index} output line\n`.repeat(4), generation: { model: 'gpt-test', input: 100, output: 20, costUsd: 0.0001 } });
  }
  return traceFixture({ taskId: 'task-large', steps });
}
