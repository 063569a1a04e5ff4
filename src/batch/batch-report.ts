import { writeFileAtomically } from '../core/atomic-write.js';
import { EXIT } from '../core/asp-error.js';
import type { Shard } from './shard.js';

/** One task's line in the reports. */
export interface TaskOutcome {
  key: string;
  line: number;
  taskId: string | null;
  status: 'passed' | 'awaiting_approval' | 'rejected' | 'failed' | 'timeout' | 'error' | 'interrupted' | 'not-run';
  exitCode: number | null;
  durationMs: number | null;
  costUsd: number | null;
  traceId: string | null;
  artifactsDir: string | null;
  attempts: number;
  failedStep: string | null;
  /** What went wrong, in a phrase: "step test exited 3", "step slow passed its deadline". */
  failure: string | null;
  outputTail: string | null;
  error: string | null;
  /** The clean-room check, when the task had one and its steps passed: its verdict and each check step. */
  check?: { status: string; exitCode: number; steps: Array<{ name: string; status: string; exitCode: number | null }> } | null;
  /** The task's egress through the host (`"network"`), when it allowed any: connections, refusals, bytes each way. */
  egress?: { connections: number; refused: number; bytesIn: number; bytesOut: number } | null;
  /** true when --resume took the outcome from the journal instead of running the task again. */
  resumed: boolean;
}

export interface BatchSummary {
  batchId: string;
  file: string;
  /** The batch's journal; null in a merged report, whose shards each name their own. */
  journal: string | null;
  concurrency: number;
  total: number;
  passed: number;
  failed: number;
  errors: number;
  interrupted: number;
  notRun: number;
  invalid: number;
  durationMs: number;
  exitCode: number;
  /** The list the batch took its tasks from: what merge-reports checks the shards' reports against. */
  list: ListIdentity;
  /** The share of the list this batch ran (--shard i/n); null when it ran the whole list, and in a merged report. */
  shard: Shard | null;
  /** Why the batch stopped starting tasks before its list was done (the engine gone, the journal unwritable); --resume finishes it. */
  stopped?: string | null;
  /** A merged report only: the shard reports it was made of, one per shard. */
  shards?: ShardSource[];
  /** A merged report only: the shards of the list no input report covered (their tasks are not in it). */
  missingShards?: number[];
  tasks: TaskOutcome[];
}

export interface ListIdentity {
  /** `sha256:<hex>` of the task list's text. */
  digest: string;
  /** The list's valid tasks, in all its shards. */
  tasks: number;
}

/** One shard's report as a merged report lists it. */
export interface ShardSource extends Shard {
  /** The report file it was read from. */
  report: string;
  batchId: string;
  journal: string | null;
  total: number;
  exitCode: number;
  durationMs: number;
}

/** What the exit code of a batch is computed from: its counts and its tasks. */
export type BatchCounts = Pick<BatchSummary, 'errors' | 'interrupted' | 'failed' | 'invalid' | 'tasks'>;

/** 130 interrupted, 3 or 2 for an error (3 when any was asp's own), 1 for a failed task or a skipped line, else 0. */
export function batchExitCode(summary: BatchCounts, interrupted: boolean): number {
  if (interrupted || summary.interrupted > 0) return EXIT.interrupted;
  if (summary.errors > 0) return summary.tasks.some((task) => task.status === 'error' && task.exitCode === EXIT.infrastructure) ? EXIT.infrastructure : EXIT.badInput;
  if (summary.failed > 0 || summary.invalid > 0) return EXIT.taskFailed;
  return EXIT.ok;
}

/** The summary's counts, from its tasks. A denied change still ran and passed: the gate declined it, the task did not fail. */
export function countOutcomes(tasks: TaskOutcome[]): Pick<BatchSummary, 'total' | 'passed' | 'failed' | 'errors' | 'interrupted' | 'notRun'> {
  const count = (...statuses: TaskOutcome['status'][]) => tasks.filter((task) => statuses.includes(task.status)).length;
  return {
    total: tasks.length,
    passed: count('passed', 'awaiting_approval', 'rejected'),
    failed: count('failed', 'timeout'),
    errors: count('error'),
    interrupted: count('interrupted'),
    notRun: count('not-run'),
  };
}

export async function writeJsonReport(file: string, summary: BatchSummary): Promise<void> {
  await writeFileAtomically(file, JSON.stringify(summary, null, 2) + '\n');
}

/**
 * JUnit XML as Jenkins, GitLab and GitHub test reporters read it: one testcase per task; a failed or timed-out
 * task is a <failure> (message: the failing step, body: its output tail), an infrastructure error an <error>,
 * a task that never ran <skipped>.
 */
export function junitXml(summary: BatchSummary, startedAt: Date): string {
  const seconds = (ms: number | null) => ((ms ?? 0) / 1000).toFixed(3);
  const failures = summary.tasks.filter((task) => task.status === 'failed' || task.status === 'timeout').length;
  const errors = summary.tasks.filter((task) => task.status === 'error').length;
  const skipped = summary.tasks.filter((task) => task.status === 'interrupted' || task.status === 'not-run').length;
  const suite = escapeXml(summary.batchId);
  const cases = summary.tasks.map((task) => {
    const open = `    <testcase classname="asp.batch.${suite}" name="${escapeXml(task.key)}" time="${seconds(task.durationMs)}">`;
    const props = task.taskId ? `\n      <system-out>${escapeXml(`task ${task.taskId}; artifacts ${task.artifactsDir ?? '-'}; trace ${task.traceId ?? '-'}`)}</system-out>` : '';
    let body = '';
    if (task.status === 'failed' || task.status === 'timeout') {
      const message = task.failure ?? `task ${task.status}`;
      body = `\n      <failure message="${escapeXml(message)}" type="${task.status}">${escapeXml(task.outputTail ?? task.error ?? '')}</failure>`;
    } else if (task.status === 'error') {
      body = `\n      <error message="${escapeXml(task.error ?? 'infrastructure error')}" type="error"/>`;
    } else if (task.status === 'interrupted' || task.status === 'not-run') {
      body = `\n      <skipped message="${task.status === 'interrupted' ? 'interrupted' : 'not run'}"/>`;
    }
    return `${open}${body}${props}\n    </testcase>`;
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="asp batch" tests="${summary.tasks.length}" failures="${failures}" errors="${errors}" skipped="${skipped}" time="${seconds(summary.durationMs)}">`,
    `  <testsuite name="${suite}" tests="${summary.tasks.length}" failures="${failures}" errors="${errors}" skipped="${skipped}" time="${seconds(summary.durationMs)}" timestamp="${startedAt.toISOString().slice(0, 19)}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

export async function writeJunitReport(file: string, summary: BatchSummary, startedAt: Date): Promise<void> {
  await writeFileAtomically(file, junitXml(summary, startedAt));
}

/**
 * Written aside and renamed into place: a reader (a CI upload step, merge-reports, another shard's batch writing
 * the same name by mistake) sees the old file or the new one, never half of one, and a failed write leaves nothing.
 */

/** XML 1.0 cannot carry most control characters at all, escaped or not: drop them. */
export function escapeXml(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}
