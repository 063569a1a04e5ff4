/**
 * The repository's own test results, as its steps left them in `.asp/`: JUnit XML in `.asp/junit/*.xml`, TAP in
 * `.asp/tap/*.tap`, and what a step's `"reports"` globs named, which the runner copied to `.asp/reports/<step>/`.
 * Read on the host from the copied-out `.asp/` only (extracted with every link refused), as untrusted input:
 * regular files only, bounded in number and bytes, valid UTF-8, parsed by the small parsers beside this file.
 * A file that fails any of it is refused with a warning; the others still count.
 */
import { constants } from 'node:fs';
import { lstat, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../core/asp-error.js';
import { parseJunit, TestReportError } from './junit-parse.js';
import { parseTap } from './tap-parse.js';

export interface TestCaseResult {
  /** The innermost testsuite's name (JUnit), the file's name (TAP). */
  suite: string;
  classname: string;
  name: string;
  status: 'passed' | 'failed' | 'error' | 'skipped';
  timeSec: number | null;
  message?: string;
  type?: string;
  /** The failure's body (a stack trace), its first 4 KiB. */
  detail?: string;
}

export interface TestCounts {
  total: number;
  passed: number;
  failed: number;
  errors: number;
  skipped: number;
}

/** A failing test as reports name it. */
export interface FailingTest {
  name: string;
  classname: string;
  message: string | null;
}

/** What a task's results come to, small enough for the result, the batch report and the trace. */
export interface TestSummary extends TestCounts {
  /** The files read, as `.asp/`-relative paths. */
  files: string[];
  /** The failing and erroring tests, at most FAILING_LISTED of them. */
  failing: FailingTest[];
}

export interface StepTestResults {
  /** The step whose `"reports"` these are; null for `.asp/junit/` and `.asp/tap/`, which no step is named by. */
  step: string | null;
  counts: TestCounts;
  cases: TestCaseResult[];
}

export interface TestResults {
  summary: TestSummary;
  cases: TestCaseResult[];
  byStep: StepTestResults[];
  /** One line per refused file, for the task's warnings. */
  problems: string[];
}

export const TEST_REPORT_LIMITS = {
  fileBytes: 8 * 1024 * 1024,
  totalBytes: 32 * 1024 * 1024,
  files: 64,
  testcases: 10_000,
} as const;
export const FAILING_LISTED = 50;

export const REPORTS_DIR = 'reports';
const SOURCES: Array<{ dir: string; kind: 'junit' | 'tap' | 'sniff' }> = [
  { dir: 'junit', kind: 'junit' },
  { dir: 'tap', kind: 'tap' },
];

export function countCases(cases: TestCaseResult[]): TestCounts {
  const count = (status: TestCaseResult['status']) => cases.filter((test) => test.status === status).length;
  return { total: cases.length, passed: count('passed'), failed: count('failed'), errors: count('error'), skipped: count('skipped') };
}

export function failingTests(cases: TestCaseResult[], max = FAILING_LISTED): FailingTest[] {
  return cases
    .filter((test) => test.status === 'failed' || test.status === 'error')
    .slice(0, max)
    .map((test) => ({ name: test.name, classname: test.classname, message: test.message ?? null }));
}

/** A test as a person names it: `classname > name`, or the name alone. */
export function testLabel(test: { name: string; classname: string }): string {
  return test.classname && test.classname !== test.name ? `${test.classname} > ${test.name}` : test.name;
}

/**
 * The results a task reports. When a clean-room check ran, its reports alone: the agent's sandbox wrote its own
 * reports and could write any testcases it liked, so they say nothing of which tests pass (their counts stay on the
 * agent's step spans in the trace). Capped at what the journal and the report read back (testSummarySchema).
 */
export function reportedTests(own: TestResults | null, checked: TestResults | null, checkRan: boolean): TestResults | null {
  const results = checkRan ? checked : own;
  if (!results) return null;
  const { summary } = results;
  return { ...results, summary: { ...summary, files: summary.files.slice(0, TEST_REPORT_LIMITS.files), failing: summary.failing.slice(0, FAILING_LISTED) } };
}

/** Every test report under `artifactsDir` (the host's copy of `.asp/`); null when there is none at all. */
export async function readTestResults(artifactsDir: string): Promise<TestResults | null> {
  const found: Array<{ relative: string; kind: 'junit' | 'tap' | 'sniff'; step: string | null }> = [];
  for (const source of SOURCES) {
    for (const name of await regularFiles(path.join(artifactsDir, source.dir))) {
      const wanted = source.kind === 'junit' ? name.endsWith('.xml') : name.endsWith('.tap');
      if (wanted) found.push({ relative: `${source.dir}/${name}`, kind: source.kind, step: null });
    }
  }
  for (const step of await directories(path.join(artifactsDir, REPORTS_DIR))) {
    for (const name of await regularFiles(path.join(artifactsDir, REPORTS_DIR, step))) found.push({ relative: `${REPORTS_DIR}/${step}/${name}`, kind: 'sniff', step });
  }
  if (!found.length) return null;
  const problems: string[] = [];
  const byStep = new Map<string | null, TestCaseResult[]>();
  const files: string[] = [];
  let bytes = 0;
  let total = 0;
  for (const [index, file] of found.entries()) {
    if (index >= TEST_REPORT_LIMITS.files) {
      problems.push(`test reports: ${found.length - index} file(s) past the first ${TEST_REPORT_LIMITS.files} not read`);
      break;
    }
    const where = `.asp/${file.relative}`;
    const read = await readBounded(path.join(artifactsDir, file.relative), Math.min(TEST_REPORT_LIMITS.fileBytes, TEST_REPORT_LIMITS.totalBytes - bytes));
    if ('problem' in read) {
      problems.push(`test report ${where} refused: ${read.problem}`);
      continue;
    }
    bytes += read.bytes;
    try {
      const kind = file.kind === 'sniff' ? (file.relative.endsWith('.tap') || !read.text.trimStart().startsWith('<') ? 'tap' : 'junit') : file.kind;
      const cases = kind === 'junit' ? parseJunit(read.text) : parseTap(read.text, path.basename(file.relative, '.tap'));
      if (total + cases.length > TEST_REPORT_LIMITS.testcases) throw new TestReportError(`more than ${TEST_REPORT_LIMITS.testcases} testcases in all the task's reports`);
      total += cases.length;
      byStep.set(file.step, [...(byStep.get(file.step) ?? []), ...cases]);
      files.push(file.relative);
    } catch (error) {
      if (!(error instanceof TestReportError)) throw error;
      problems.push(`test report ${where} refused: ${error.message}`);
    }
  }
  const cases = [...byStep.values()].flat();
  return {
    summary: { ...countCases(cases), files, failing: failingTests(cases) },
    cases,
    byStep: [...byStep.entries()].map(([step, stepCases]) => ({ step, counts: countCases(stepCases), cases: stepCases })),
    problems,
  };
}

/** The names of the regular files right in `dir` (sorted); none when it is missing or not a real directory. */
async function regularFiles(dir: string): Promise<string[]> {
  return (await entries(dir)).filter((entry) => entry.isFile()).map((entry) => entry.name);
}

async function directories(dir: string): Promise<string[]> {
  return (await entries(dir)).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
}

async function entries(dir: string) {
  const info = await lstat(dir).catch(() => undefined);
  if (!info?.isDirectory()) return [];
  const list = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** At most `max` bytes of a regular file (never through a link), as strict UTF-8. */
async function readBounded(file: string, max: number): Promise<{ text: string; bytes: number } | { problem: string }> {
  if (max <= 0) return { problem: `the task's reports pass ${TEST_REPORT_LIMITS.totalBytes} bytes in all` };
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    return { problem: `unreadable (${errorMessage(error)})` };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return { problem: 'not a regular file' };
    if (info.size > max) return { problem: `${info.size} bytes, more than ${max}` };
    // One byte more than it said it holds: a file still growing is refused rather than read in part.
    const buffer = Buffer.alloc(info.size + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > info.size) return { problem: 'grew as it was read' };
    try {
      return { text: new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(0, bytesRead)).replace(/^\uFEFF/, ''), bytes: bytesRead };
    } catch {
      return { problem: 'not valid UTF-8' };
    }
  } finally {
    await handle.close();
  }
}
