import type { TaskOutcome } from '../../src/batch/batch-report.js';

/** One task's line of a batch report, as a test wants it: status, exit code from it, the rest empty unless given. */
export function outcome(key: string, status: TaskOutcome['status'], extra: Partial<TaskOutcome> = {}): TaskOutcome {
  return {
    key,
    line: 1,
    taskId: `t-${key}`,
    status,
    exitCode: status === 'passed' ? 0 : 1,
    durationMs: 1500,
    costUsd: null,
    traceId: null,
    artifactsDir: null,
    attempts: 1,
    failedStep: null,
    failure: null,
    outputTail: null,
    error: null,
    resumed: false,
    ...extra,
  };
}
