import { EXIT } from '../core/asp-error.js';
import type { ResolvedStep } from '../config/pipeline.js';
import type { TaskStatus } from '../tracing/trace-model.js';
import type { SessionEnd } from './sandbox-session.js';
import type { StepTracker } from './step-records.js';
import type { StepEnd } from './task-events.js';

export interface StepResult {
  name: string;
  status: 'passed' | 'failed' | 'timeout' | 'skipped' | 'interrupted';
  exitCode: number | null;
  durationMs: number | null;
}

export interface SessionOutcome {
  status: TaskStatus;
  exitCode: number;
  error?: string;
}

const STOPPED_FROM_OUTSIDE = 'the sandbox was stopped from outside asp (SIGTERM, exit 143): the container engine shutting down, or a `docker stop`';

/** What one sandbox session's end means for the verdict. */
export function outcomeOf(end: SessionEnd): SessionOutcome {
  switch (end.kind) {
    case 'deadline':
      return { status: 'timeout', exitCode: EXIT.deadline, error: end.what };
    case 'interrupted':
      return { status: 'interrupted', exitCode: EXIT.interrupted, error: 'interrupted' };
    case 'stopped':
      return { status: 'failed', exitCode: EXIT.taskFailed, error: end.what };
    case 'exited':
      if (end.taskEnd?.status === 'passed' && end.statusCode === 0) return { status: 'passed', exitCode: EXIT.ok };
      if (end.taskEnd?.status === 'timeout' || end.statusCode === EXIT.deadline) return { status: 'timeout', exitCode: EXIT.deadline, error: 'a step passed its deadline' };
      // No step can signal the runner (it is root, the steps are not), and asp stops a sandbox by SIGKILL: a runner
      // ended by SIGTERM was stopped from outside, the engine shutting down or a `docker stop`. Not the task's verdict.
      if (!end.taskEnd && end.statusCode === 128 + 15) return { status: 'error', exitCode: EXIT.infrastructure, error: STOPPED_FROM_OUTSIDE };
      return { status: 'failed', exitCode: EXIT.taskFailed, ...(end.taskEnd ? {} : { error: `the sandbox exited with ${end.statusCode}` }) };
  }
}

/** Why the steps still open when a session ended did not end themselves, for their host-written records. */
export function whyStopped(end: SessionEnd): string {
  switch (end.kind) {
    case 'deadline':
    case 'stopped':
      return end.what;
    case 'interrupted':
      return 'interrupted';
    case 'exited':
      return `the sandbox exited (${end.statusCode}) before the step ended`;
  }
}

/** Each planned step as the protocol told it: how it ended, or that it never ended, or never started. */
export function stepResults(steps: ResolvedStep[], starts: Set<string>, ends: Map<string, StepEnd>, status: TaskStatus, tracker: StepTracker): StepResult[] {
  return steps.map((step): StepResult => {
    const end = ends.get(step.name);
    if (end) {
      const stepStatus = end.timedOut ? 'timeout' : end.exitCode === 0 ? 'passed' : 'failed';
      return { name: step.name, status: stepStatus, exitCode: end.exitCode, durationMs: end.durationMs };
    }
    if (starts.has(step.name)) {
      // Started, never ended: the container was stopped under it (a deadline, an interrupt, a spent model budget).
      // Its duration is the host's: from its step.start until the sandbox stopped.
      const durationMs = tracker.durationMs(step.name);
      if (status === 'failed') return { name: step.name, status: 'failed', exitCode: EXIT.taskFailed, durationMs };
      return { name: step.name, status: status === 'interrupted' ? 'interrupted' : 'timeout', exitCode: status === 'interrupted' ? EXIT.interrupted : EXIT.deadline, durationMs };
    }
    return { name: step.name, status: 'skipped', exitCode: null, durationMs: null };
  });
}
