import { writeFile } from 'node:fs/promises';

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
  /** true when --resume took the outcome from the journal instead of running the task again. */
  resumed: boolean;
}

export interface BatchSummary {
  batchId: string;
  file: string;
  journal: string;
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
  tasks: TaskOutcome[];
}

export async function writeJsonReport(file: string, summary: BatchSummary): Promise<void> {
  await writeFile(file, JSON.stringify(summary, null, 2) + '\n');
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
  await writeFile(file, junitXml(summary, startedAt));
}

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
