/**
 * The repository's testcases of one task as the batch JUnit carries them, rendered when the task ends and kept as
 * one bounded string: a batch of thousands of tasks, each with up to 10,000 testcases read from files the sandbox
 * wrote, must neither hold them all until it ends nor write a report that grows past what a string can hold.
 */
import { detached } from '../tracing/junit-parse.js';
import type { TestCaseResult } from '../tracing/test-results.js';
import { escapeXml } from './xml-escape.js';

export const JUNIT_CASE_LIMITS = {
  /** Of one task: all its failing testcases up to this, then the first of the others. */
  cases: 200,
  /** Of one task's rendered testcases. */
  taskBytes: 256 * 1024,
  /** Of one rendered testcase; a longer one is rendered again with its message and body cut. */
  caseBytes: 16 * 1024,
  /** A classname longer than this is cut (a suite's name reused for each testcase would multiply the report). */
  classname: 200,
  /** Of the whole batch: the tasks past it keep their own testcase only. */
  batchCases: 20_000,
  batchBytes: 32 * 1024 * 1024,
} as const;

/** One task's repository testcases as the batch JUnit writes them. */
export interface TaskJunitCases {
  /** The <testcase> elements, one a line, as a string that shares no memory with the report files. */
  xml: string;
  tests: number;
  failures: number;
  errors: number;
  skipped: number;
  /** The task's testcases left out by the bounds. */
  omitted: number;
}

/** What the whole batch may still keep; one per batch, taken from as its tasks end. */
export class JunitBudget {
  cases: number = JUNIT_CASE_LIMITS.batchCases;
  bytes: number = JUNIT_CASE_LIMITS.batchBytes;
}

const cut = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** Seconds with three decimals; a time the file set out of 0..10^7 s (or not a number) is clamped, never `1e+300`. */
export function secondsText(seconds: number | null): string {
  const value = seconds !== null && Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0), 1e7) : 0;
  return value.toFixed(3);
}

/** One of the repository's testcases, its class under the task's name so CI groups it there. */
export function repositoryCase(test: TestCaseResult, classPrefix: string, short = false): { xml: string; status: 'passed' | 'failure' | 'error' | 'skipped' } {
  const classname = cut(test.classname || test.suite, JUNIT_CASE_LIMITS.classname);
  const open = `    <testcase classname="${classPrefix}${classname ? `.${escapeXml(classname)}` : ''}" name="${escapeXml(cut(test.name, short ? 256 : 1024) || '(unnamed)')}" time="${secondsText(test.timeSec)}">`;
  const message = escapeXml(cut(test.message ?? '', short ? 256 : 1024));
  const type = escapeXml(cut(test.type ?? test.status, 200));
  if (test.status === 'passed') return { xml: `${open}</testcase>`, status: 'passed' };
  if (test.status === 'skipped') return { xml: `${open}\n      <skipped message="${message}"/>\n    </testcase>`, status: 'skipped' };
  const element = test.status === 'failed' ? 'failure' : 'error';
  return { xml: `${open}\n      <${element} message="${message}" type="${type}">${escapeXml(cut(test.detail ?? '', short ? 512 : 4096))}</${element}>\n    </testcase>`, status: element };
}

/**
 * The testcases of one task that fit its bounds and what is left of the batch's: the failing ones chosen first (they
 * are what a reader looks for), then the others, all written in the reports' order.
 */
export function renderTaskCases(cases: TestCaseResult[], classPrefix: string, budget: JunitBudget): TaskJunitCases {
  const isFailing = (test: TestCaseResult) => test.status === 'failed' || test.status === 'error';
  const indexed = cases.map((test, index) => ({ test, index }));
  const order = [...indexed.filter((entry) => isFailing(entry.test)), ...indexed.filter((entry) => !isFailing(entry.test))];
  const parts: Array<{ index: number; xml: string }> = [];
  const counts = { tests: 0, failures: 0, errors: 0, skipped: 0 };
  let bytes = 0;
  for (const { test, index } of order) {
    if (counts.tests >= JUNIT_CASE_LIMITS.cases || budget.cases <= 0) break;
    let entry = repositoryCase(test, classPrefix);
    if (Buffer.byteLength(entry.xml) > JUNIT_CASE_LIMITS.caseBytes) entry = repositoryCase(test, classPrefix, true);
    const size = Buffer.byteLength(entry.xml) + 1;
    if (size > JUNIT_CASE_LIMITS.caseBytes || bytes + size > JUNIT_CASE_LIMITS.taskBytes || size > budget.bytes) break;
    parts.push({ index, xml: entry.xml });
    bytes += size;
    budget.bytes -= size;
    budget.cases -= 1;
    counts.tests += 1;
    if (entry.status === 'failure') counts.failures += 1;
    else if (entry.status === 'error') counts.errors += 1;
    else if (entry.status === 'skipped') counts.skipped += 1;
  }
  // Written in the reports' order, whichever were chosen.
  const xml = parts
    .sort((a, b) => a.index - b.index)
    .map((part) => part.xml)
    .join('\n');
  return { xml: detached(xml), ...counts, omitted: cases.length - counts.tests };
}
