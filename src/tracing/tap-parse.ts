/**
 * TAP (versions 13 and 14) as a step wrote it, untrusted: test lines (`ok N - name`, `not ok N - name # SKIP why`,
 * `# TODO`), the plan (`1..N`) and `Bail out!`. Indented lines (subtests, YAML diagnostics) are not read; lines past
 * a length and tests past a count are refused rather than kept.
 */
import { detached, JUNIT_LIMITS, TestReportError } from './junit-parse.js';
import type { TestCaseResult } from './test-results.js';

const LINE_MAX = 64 * 1024;
const TEST_LINE = /^(not )?ok\b(?: +(\d{1,9}))?/;
/** A directive after the description's first `#`; a `#` followed by anything else is a comment. */
const DIRECTIVE = /^#\s*(SKIP|TODO)\b\s*(.*)$/i;

export function parseTap(text: string, suite: string): TestCaseResult[] {
  const cases: TestCaseResult[] = [];
  let planned: number | undefined;
  let bailed: string | undefined;
  let seen = 0;
  for (const line of text.split('\n')) {
    if (line.length > LINE_MAX) throw new TestReportError(`a line longer than ${LINE_MAX} characters`);
    const trimmed = line.replace(/\r$/, '');
    if (/^TAP version (13|14)\s*$/.test(trimmed) || trimmed.startsWith('#') || /^\s/.test(trimmed) || !trimmed) continue;
    const plan = /^1\.\.(\d{1,9})\b/.exec(trimmed);
    if (plan) {
      planned = Number(plan[1]);
      continue;
    }
    const bail = /^Bail out!\s*(.*)$/.exec(trimmed);
    if (bail) {
      bailed = bail[1] || 'bailed out';
      break;
    }
    const test = TEST_LINE.exec(trimmed);
    if (!test) continue;
    if (++seen > JUNIT_LIMITS.testcases) throw new TestReportError(`more than ${JUNIT_LIMITS.testcases} tests`);
    const [head, not, number] = test;
    const rest = trimmed.slice(head.length);
    const hash = rest.indexOf('#');
    const name = (hash < 0 ? rest : rest.slice(0, hash)).replace(/^\s*-?/, '');
    const found = hash < 0 ? null : DIRECTIVE.exec(rest.slice(hash));
    const directive = found?.[1];
    const reason = found?.[2] ?? '';
    const label = name.trim() || `test ${number ?? seen}`;
    const skipped = directive !== undefined;
    // A TODO that fails is expected to; a SKIP was not run: neither is a failure.
    const status = skipped ? 'skipped' : not ? 'failed' : 'passed';
    cases.push({
      suite,
      classname: suite,
      name: detached(label.slice(0, JUNIT_LIMITS.attribute)),
      status,
      timeSec: null,
      ...(skipped && reason.trim() ? { message: detached(reason.trim().slice(0, JUNIT_LIMITS.attribute)) } : {}),
    });
  }
  if (bailed !== undefined) cases.push({ suite, classname: suite, name: 'Bail out!', status: 'error', timeSec: null, message: detached(bailed.slice(0, JUNIT_LIMITS.attribute)) });
  else if (planned !== undefined && planned > seen) {
    cases.push({ suite, classname: suite, name: `${planned - seen} planned test(s) not run`, status: 'error', timeSec: null, message: `the plan says 1..${planned}; ${seen} ran` });
  }
  if (!cases.length && planned === undefined) throw new TestReportError('has no TAP test lines and no plan');
  return cases;
}
