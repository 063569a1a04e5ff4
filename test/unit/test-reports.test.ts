import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { failureLine, junitXml, type BatchSummary, type TaskOutcome } from '../../src/batch/batch-report.js';
import { parseJournalLine } from '../../src/batch/journal.js';
import { batchReportSchema } from '../../src/batch/report-file.js';
import { parseWith, pipelineSchema } from '../../src/config/task-spec.js';
import { JUNIT_LIMITS, parseJunit, TestReportError } from '../../src/tracing/junit-parse.js';
import { readProbeInputs } from '../../src/tracing/probe-inputs.js';
import { probeScores } from '../../src/tracing/probe-scores.js';
import { parseTap } from '../../src/tracing/tap-parse.js';
import { readTestResults, TEST_REPORT_LIMITS } from '../../src/tracing/test-results.js';
import { validateAgainstSurefire } from '../helpers/junit-schema.js';
import { traceFixture } from '../helpers/trace-fixtures.js';

const FIXTURES = path.resolve('test/fixtures/test-reports');
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');

function artifacts(files: Record<string, string | Buffer>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-test-reports-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

describe('the JUnit parser', () => {
  it('reads names, outcomes, messages, bodies and times, nested suites and references included', () => {
    const cases = parseJunit(fixture('sample-junit.xml'));
    expect(cases.map((test) => [test.suite, test.name, test.status])).toEqual([
      ['math > nested', 'adds', 'passed'],
      ['math', 'subtracts & rounds', 'passed'],
      ['math', 'divides', 'failed'],
      ['math', 'later', 'skipped'],
    ]);
    expect(cases[2]).toMatchObject({ classname: 'math', message: 'expected 2, got 3', type: 'AssertionError', timeSec: 0.003 });
    expect(cases[2]?.detail).toContain('at divides (test/math.test.js:9:3) <not markup>');
    expect(cases[3]?.message).toBe('not yet');
  });

  it('takes a lone <testsuite> root, as pytest and gotestsum write', () => {
    expect(parseJunit('<testsuite name="s"><testcase classname="c" name="n"><error message="boom"/></testcase></testsuite>')).toMatchObject([{ status: 'error', message: 'boom' }]);
  });

  it.each([
    ['a DOCTYPE', '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuites/>', /DOCTYPE declaration/],
    ['entity expansion', `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><testsuites name="&lol2;"/>`, /DOCTYPE/],
    ['an undeclared entity', '<testsuites name="&lol;"/>', /unknown entity/],
    ['an external entity reference in a failure', '<testsuites><testsuite name="x"><testcase name="a"><failure>&xxe;</failure></testcase></testsuite></testsuites>', /unknown entity/],
    ['a file cut short', '<testsuites><testsuite name="x"><testcase name="a">', /never closed/],
    ['mismatched tags', '<testsuites><testsuite></testcase></testsuites>', /does not close/],
    ['another root', '<html><body/></html>', /root element is <html>/],
    ['no root at all', '   ', /no <testsuites>/],
    ['an unquoted attribute', '<testsuites name=x/>', /not quoted/],
  ])('refuses %s', (_what, xml, why) => {
    expect(() => parseJunit(xml)).toThrow(TestReportError);
    expect(() => parseJunit(xml)).toThrow(why);
  });

  it('refuses nesting deeper than its limit, at once', () => {
    const deep = `<testsuites>${'<testsuite>'.repeat(100_000)}`;
    const started = performance.now();
    expect(() => parseJunit(deep)).toThrow(`nested deeper than ${JUNIT_LIMITS.depth}`);
    expect(performance.now() - started).toBeLessThan(1000);
    // Within the limit it reads.
    expect(parseJunit(`${'<testsuite name="s">'.repeat(10)}<testcase name="t"/>${'</testsuite>'.repeat(10)}`)).toHaveLength(1);
  });

  it('refuses more testcases than its limit', () => {
    const many = (count: number) => `<testsuite name="s">${'<testcase name="t"/>'.repeat(count)}</testsuite>`;
    expect(parseJunit(many(JUNIT_LIMITS.testcases))).toHaveLength(JUNIT_LIMITS.testcases);
    expect(() => parseJunit(many(JUNIT_LIMITS.testcases + 1))).toThrow(`more than ${JUNIT_LIMITS.testcases} testcases`);
  });

  it('keeps at most 1 KiB of a message and 4 KiB of a body', () => {
    const [test] = parseJunit(`<testsuite name="s"><testcase name="t"><failure message="${'m'.repeat(5000)}">${'d'.repeat(100_000)}</failure></testcase></testsuite>`);
    expect(test?.message).toHaveLength(JUNIT_LIMITS.attribute);
    expect(test?.detail).toHaveLength(JUNIT_LIMITS.detail);
  });

  it('decodes no more of a long attribute than it keeps', () => {
    const started = performance.now();
    const [test] = parseJunit(`<testsuite name="s"><testcase name="${'&amp;'.repeat(1_500_000)}"/></testsuite>`);
    expect(test?.name).toBe(`${'&'.repeat(JUNIT_LIMITS.attribute - 1)}…`);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('reads an unclosed tag of a megabyte of spaces in linear time', () => {
    const started = performance.now();
    expect(() => parseJunit(`<testsuites${' '.repeat(4 * 1024 * 1024)}`)).toThrow(TestReportError);
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('the TAP parser', () => {
  it('reads ok, not ok, SKIP and TODO, and ignores comments and YAML blocks', () => {
    const cases = parseTap(fixture('sample.tap'), 'sample');
    expect(cases.map((test) => [test.name, test.status])).toEqual([
      ['parses', 'passed'],
      ['prints', 'failed'],
      ['waits', 'skipped'],
      ['someday', 'skipped'],
    ]);
    expect(cases[2]?.message).toBe('no network');
  });

  it('counts the tests a plan promised and never ran, and a bail out, as errors', () => {
    expect(parseTap('1..3\nok 1 - a\n', 's').map((test) => test.status)).toEqual(['passed', 'error']);
    expect(parseTap('1..3\nok 1 - a\nBail out! database down\nok 2 - b\n', 's').at(-1)).toMatchObject({ name: 'Bail out!', status: 'error', message: 'database down' });
  });

  it('refuses text that is not TAP, and lines past its limit', () => {
    expect(() => parseTap('hello\nworld\n', 's')).toThrow(/no TAP test lines/);
    expect(() => parseTap(`ok 1 - ${'x'.repeat(70_000)}\n`, 's')).toThrow(/longer than/);
  });
});

describe('reading a task’s test reports', () => {
  it('reads .asp/junit/*.xml, .asp/tap/*.tap and .asp/reports/<step>/*, by step, and counts them', async () => {
    const dir = artifacts({
      'junit/unit.xml': fixture('sample-junit.xml'),
      'junit/notes.txt': 'not a report',
      'tap/cli.tap': fixture('sample.tap'),
      'reports/test/test-results__go.xml': '<testsuite name="go"><testcase classname="pkg" name="TestX"><failure message="want 1"/></testcase></testsuite>',
    });
    const results = await readTestResults(dir);
    expect(results?.problems).toEqual([]);
    expect(results?.summary).toMatchObject({ total: 9, passed: 3, failed: 3, errors: 0, skipped: 3, files: ['junit/unit.xml', 'tap/cli.tap', 'reports/test/test-results__go.xml'] });
    expect(results?.summary.failing.map((test) => test.name)).toEqual(['divides', 'prints', 'TestX']);
    expect(results?.byStep.map((group) => [group.step, group.counts.total])).toEqual([
      [null, 8],
      ['test', 1],
    ]);
  });

  it('is null when there is no report at all', async () => {
    expect(await readTestResults(artifacts({ 'test.json': '{}' }))).toBeNull();
  });

  it('refuses hostile files with one line each, and still reads the others', async () => {
    const huge = Buffer.alloc(TEST_REPORT_LIMITS.fileBytes + 1, 0x20);
    const dir = artifacts({
      'junit/a-good.xml': '<testsuite name="s"><testcase name="ok"/></testsuite>',
      'junit/b-huge.xml': huge,
      'junit/c-entities.xml': '<!DOCTYPE x [<!ENTITY a "b">]><testsuite name="&a;"/>',
      'junit/d-utf8.xml': Buffer.concat([Buffer.from('<testsuite name="'), Buffer.from([0xc3, 0x28]), Buffer.from('"/>')]),
      'junit/e-deep.xml': `<testsuites>${'<testsuite>'.repeat(10_000)}`,
    });
    symlinkSync('/etc/passwd', path.join(dir, 'junit/f-link.xml'));
    const started = performance.now();
    const results = await readTestResults(dir);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(results?.summary).toMatchObject({ total: 1, passed: 1, files: ['junit/a-good.xml'] });
    expect(results?.problems).toEqual([
      expect.stringMatching(/^test report \.asp\/junit\/b-huge\.xml refused: 8388609 bytes, more than 8388608$/),
      expect.stringMatching(/c-entities\.xml refused: has a DOCTYPE declaration/),
      expect.stringMatching(/d-utf8\.xml refused: not valid UTF-8/),
      expect.stringMatching(/e-deep\.xml refused: nested deeper than 32/),
    ]);
  });

  it('reads at most its number of files', async () => {
    const files = Object.fromEntries(
      Array.from({ length: TEST_REPORT_LIMITS.files + 3 }, (_, index) => [`junit/r${String(index).padStart(3, '0')}.xml`, '<testsuite name="s"><testcase name="t"/></testsuite>']),
    );
    const results = await readTestResults(artifacts(files));
    expect(results?.summary.total).toBe(TEST_REPORT_LIMITS.files);
    expect(results?.problems).toEqual([`test reports: 3 file(s) past the first ${TEST_REPORT_LIMITS.files} not read`]);
  });
});

describe('probe_accuracy from test reports', () => {
  it('is passed ÷ total of the reports when no test_results.json was written', async () => {
    const document = await traceFixture();
    const inputs = await readProbeInputs(artifacts({}), undefined, { passed: 3, total: 4 });
    const accuracy = probeScores(document, inputs, { plannedSteps: 1 }).find((score) => score.name === 'probe_accuracy');
    expect(accuracy).toMatchObject({ value: 0.75, comment: "3/4 tests passed (the steps' JUnit/TAP reports)" });
  });

  it('lets test_results.json win over the reports', async () => {
    const document = await traceFixture();
    const inputs = await readProbeInputs(artifacts({ 'test_results.json': JSON.stringify({ passed: 1, total: 2 }) }), undefined, { passed: 3, total: 4 });
    expect(probeScores(document, inputs).find((score) => score.name === 'probe_accuracy')?.value).toBe(0.5);
  });
});

describe('a step’s "reports"', () => {
  const pipeline = (reports: unknown) => () => parseWith(pipelineSchema, { steps: [{ name: 'test', run: 'npm test', reports }] }, 'pipeline p.json');

  it('takes simple globs under the repository', () => {
    expect(pipeline(['test-results/*.xml', 'out/report-?.tap'])().steps[0]?.reports).toEqual(['test-results/*.xml', 'out/report-?.tap']);
  });

  it.each([['../x.xml'], ['/etc/passwd'], ['a/../../b.xml'], ['a/**/b.xml'], ['a//b.xml'], ['a/[ab].xml'], ['x'.repeat(300)]])('refuses %s as bad input in one line', (glob) => {
    expect(pipeline([glob])).toThrow(/steps\.0\.reports\.0.*must be a path under the repository/);
  });
});

function outcome(key: string, status: TaskOutcome['status'], extra: Partial<TaskOutcome> = {}): TaskOutcome {
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

describe('the failure line', () => {
  it('names the step, its exit code, the first failing test, how many failed and where the log is', () => {
    const line = failureLine(
      { reason: 'step test exited 1', firstFailingTest: { name: 'divides', classname: 'math', message: 'expected 2, got 3\n  at x' }, logs: ['/w/.asp/events.jsonl', '/w/.asp/test.json'] },
      { total: 4, failed: 1, errors: 1 },
    );
    expect(line).toBe('step test exited 1; first failing test: math > divides (expected 2, got 3); 2 of 4 tests failed; full log: /w/.asp/events.jsonl, /w/.asp/test.json');
  });

  it('is the reason and the log when no test is known', () => {
    expect(failureLine({ reason: 'step build exited 2', logs: ['/w/.asp/events.jsonl'] }, null)).toBe('step build exited 2; full log: /w/.asp/events.jsonl');
  });
});

describe('the batch JUnit with test reports', () => {
  const cases = parseJunit(fixture('sample-junit.xml'));
  const tasks = [
    outcome('plain', 'passed'),
    outcome('with tests', 'failed', {
      failedStep: 'test',
      failure: 'step test exited 1; first failing test: math > divides (expected 2, got 3)',
      outputTail: 'FAIL divides',
      testCases: cases,
      tests: { total: 4, passed: 2, failed: 1, errors: 0, skipped: 1, files: ['junit/unit.xml'], failing: [{ name: 'divides', classname: 'math', message: 'expected 2, got 3' }] },
    }),
    outcome('never', 'not-run'),
  ];
  const xml = junitXml({ batchId: 'b<1>', tasks, durationMs: 4000 } as BatchSummary, new Date('2026-12-01T00:00:00Z'));

  it('makes a task with reports a testsuite holding its own testcase and the repository’s', () => {
    const parsed = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (name) => name === 'testsuite' || name === 'testcase' }).parse(xml);
    const [plain, withTests] = parsed.testsuites.testsuite;
    expect(parsed.testsuites).toMatchObject({ tests: '7', failures: '2', errors: '0', skipped: '2' });
    expect(plain.testcase.map((test: { name: string }) => test.name)).toEqual(['plain', 'never']);
    expect(withTests).toMatchObject({ name: 'b<1>.with tests', tests: '5', failures: '2', skipped: '1' });
    expect(withTests.testcase.map((test: { name: string }) => test.name)).toEqual(['with tests', 'adds', 'subtracts & rounds', 'divides', 'later']);
    expect(withTests.testcase[0].failure).toMatchObject({ message: 'step test exited 1; first failing test: math > divides (expected 2, got 3)', '#text': 'FAIL divides' });
    expect(withTests.testcase[3]).toMatchObject({ classname: 'asp.batch.b<1>.with tests.math', time: '0.003', failure: { message: 'expected 2, got 3', type: 'AssertionError' } });
    expect(withTests.testcase[3].failure['#text']).toContain('at divides (test/math.test.js:9:3) <not markup>');
    expect(withTests.testcase[4].skipped.message).toBe('not yet');
  });

  it('is valid against Surefire’s schema, and the schema check can fail', () => {
    expect(validateAgainstSurefire(xml)).toMatchObject({ ok: true });
    const broken = xml.replace(/<testcase classname="[^"]*" name="adds"/, '<testcase name="adds"');
    expect(broken).not.toBe(xml);
    expect(validateAgainstSurefire(broken).ok).toBe(false);
  });

  it('keeps the tests of a task in a report read back for merge-reports, checked', () => {
    const report = { batchId: 'b', file: 'f', journal: null, concurrency: 1, total: 1, passed: 0, failed: 1, errors: 0, interrupted: 0, notRun: 0, invalid: 0, durationMs: 1, exitCode: 1 };
    const withTests = { ...report, list: { digest: `sha256:${'0'.repeat(64)}`, tasks: 1 }, shard: null, tasks: [{ ...tasks[1], testCases: undefined }] };
    expect(batchReportSchema.parse(withTests).tasks[0]?.tests).toEqual(tasks[1]?.tests);
    const damaged = { ...withTests, tasks: [{ ...tasks[1], testCases: undefined, tests: { ...tasks[1]?.tests, failing: 'all' } }] };
    expect(batchReportSchema.safeParse(damaged).success).toBe(false);
  });

  it('keeps the tests of a task in the journal, checked', () => {
    const tests = tasks[1]?.tests;
    const record = parseJournalLine(JSON.stringify({ event: 'end', key: 'k', at: '2026-12-01T00:00:00Z', attempt: 1, status: 'failed', tests }));
    expect(record?.tests).toEqual(tests);
    expect(parseJournalLine(JSON.stringify({ event: 'end', key: 'k', at: '2026-12-01T00:00:00Z', attempt: 1, status: 'failed', tests: { ...tests, total: -1 } }))).toBeUndefined();
  });
});
