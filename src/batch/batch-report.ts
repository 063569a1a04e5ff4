import { writeFileAtomically } from '../core/atomic-write.js';
import { EXIT } from '../core/asp-error.js';
import type { StepFailure } from '../supervisor/task-result.js';
import { testLabel, type TestSummary } from '../tracing/test-results.js';
import { secondsText, type TaskJunitCases } from './junit-cases.js';
import type { Shard } from './shard.js';
import { escapeXml } from './xml-escape.js';

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
  /** The repository's own test results (its steps' JUnit/TAP reports): counts and the failing tests; null when none. */
  tests?: TestSummary | null;
  /** Those reports' testcases as the JUnit report writes them, rendered and bounded when the task ended (--junit only). */
  junitCases?: TaskJunitCases;
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
  // The report lists each task's failing tests (`tests.failing`); the testcases are the JUnit's.
  const tasks = summary.tasks.map(({ junitCases: _cases, ...task }) => task);
  await writeFileAtomically(file, JSON.stringify({ ...summary, tasks }, null, 2) + '\n');
}

/**
 * A failed task in one line a person can act on: the step and its exit code, the first failing test when its
 * reports name one, how many failed, and where the whole log is. The output's tail is beside it (`outputTail`, the
 * JUnit failure's body).
 */
export function failureLine(failed: Pick<StepFailure, 'reason' | 'firstFailingTest' | 'logs'>, tests: Pick<TestSummary, 'total' | 'failed' | 'errors'> | null): string {
  const parts = [failed.reason];
  const first = failed.firstFailingTest;
  if (first) {
    const message = first.message?.split('\n')[0]?.trim().slice(0, 200);
    parts.push(`first failing test: ${testLabel(first)}${message ? ` (${message})` : ''}`);
  }
  if (tests && tests.failed + tests.errors > 0) parts.push(`${tests.failed + tests.errors} of ${tests.total} tests failed`);
  if (failed.logs?.length) parts.push(`full log: ${failed.logs.join(', ')}`);
  return parts.join('; ');
}

/**
 * JUnit XML as Jenkins, GitLab and GitHub test reporters read it (Surefire's schema: testsuites > testsuite >
 * testcase). One testcase per task: a failed or timed-out task is a <failure> (message: failureLine's, body: its
 * output tail), an infrastructure error an <error>, a task that never ran <skipped>. A task whose steps wrote test
 * reports is a testsuite of its own instead: its task testcase first, then the repository's testcases as they were
 * rendered when the task ended (bounded: JUNIT_CASE_LIMITS), with a property saying how many were left out.
 * Returned as chunks, each bounded, written one after the other: the whole can pass what one string can hold.
 */
export function junitChunks(summary: BatchSummary, startedAt: Date): string[] {
  const timestamp = startedAt.toISOString().slice(0, 19);
  const batch = escapeXml(summary.batchId);
  const plain = summary.tasks.filter((task) => !task.junitCases);
  const suites: Array<{ name: string; time: number | null; cases: Array<{ xml: string; status: CaseStatus }>; repository?: TaskJunitCases }> = [];
  if (plain.length || plain.length === summary.tasks.length) suites.push({ name: batch, time: summary.durationMs, cases: plain.map((task) => taskCase(task, batch)) });
  for (const task of summary.tasks) {
    if (task.junitCases) suites.push({ name: `${batch}.${escapeXml(task.key)}`, time: task.durationMs, cases: [taskCase(task, batch)], repository: task.junitCases });
  }
  const totals = (list: typeof suites) => {
    const count = (status: CaseStatus) => list.reduce((sum, suite) => sum + suite.cases.filter((entry) => entry.status === status).length, 0);
    const repository = (key: 'tests' | 'failures' | 'errors' | 'skipped') => list.reduce((sum, suite) => sum + (suite.repository?.[key] ?? 0), 0);
    const tests = list.reduce((sum, suite) => sum + suite.cases.length, 0) + repository('tests');
    return `tests="${tests}" failures="${count('failure') + repository('failures')}" errors="${count('error') + repository('errors')}" skipped="${count('skipped') + repository('skipped')}"`;
  };
  const chunks = ['<?xml version="1.0" encoding="UTF-8"?>\n', `<testsuites name="asp batch" ${totals(suites)} time="${seconds(summary.durationMs)}">\n`];
  for (const suite of suites) {
    const omitted = suite.repository?.omitted ? `    <properties>\n      <property name="asp.omitted-testcases" value="${suite.repository.omitted}"/>\n    </properties>\n` : '';
    chunks.push(`  <testsuite name="${suite.name}" ${totals([suite])} time="${seconds(suite.time)}" timestamp="${timestamp}">\n${omitted}`);
    chunks.push(...suite.cases.map((entry) => `${entry.xml}\n`));
    if (suite.repository?.xml) chunks.push(`${suite.repository.xml}\n`);
    if (suite.repository?.omitted)
      chunks.push(
        `    <system-out>${suite.repository.omitted} of the task's testcases not listed here (the batch JUnit keeps the failing ones first, then the others, within its bounds)</system-out>\n`,
      );
    chunks.push('  </testsuite>\n');
  }
  chunks.push('</testsuites>\n');
  return chunks;
}

/** The batch JUnit as one string (for tests and small batches; the report is written by chunks). */
export function junitXml(summary: BatchSummary, startedAt: Date): string {
  return junitChunks(summary, startedAt).join('');
}

type CaseStatus = 'passed' | 'failure' | 'error' | 'skipped';

const seconds = (ms: number | null) => secondsText((ms ?? 0) / 1000);

function taskCase(task: TaskOutcome, batch: string): { xml: string; status: CaseStatus } {
  const open = `    <testcase classname="asp.batch.${batch}" name="${escapeXml(task.key)}" time="${seconds(task.durationMs)}">`;
  const props = task.taskId ? `\n      <system-out>${escapeXml(`task ${task.taskId}; artifacts ${task.artifactsDir ?? '-'}; trace ${task.traceId ?? '-'}`)}</system-out>` : '';
  let body = '';
  let status: CaseStatus = 'passed';
  if (task.status === 'failed' || task.status === 'timeout') {
    const message = task.failure ?? `task ${task.status}`;
    body = `\n      <failure message="${escapeXml(message)}" type="${task.status}">${escapeXml(task.outputTail ?? task.error ?? '')}</failure>`;
    status = 'failure';
  } else if (task.status === 'error') {
    body = `\n      <error message="${escapeXml(task.error ?? 'infrastructure error')}" type="error"/>`;
    status = 'error';
  } else if (task.status === 'interrupted' || task.status === 'not-run') {
    body = `\n      <skipped message="${task.status === 'interrupted' ? 'interrupted' : 'not run'}"/>`;
    status = 'skipped';
  }
  return { xml: `${open}${body}${props}\n    </testcase>`, status };
}

/**
 * Written aside and renamed into place: a reader (a CI upload step, merge-reports, another shard's batch writing
 * the same name by mistake) sees the old file or the new one, never half of one, and a failed write leaves nothing.
 */
export async function writeJunitReport(file: string, summary: BatchSummary, startedAt: Date): Promise<void> {
  await writeFileAtomically(file, junitChunks(summary, startedAt));
}

export { escapeXml };
