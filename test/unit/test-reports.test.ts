import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import v8 from 'node:v8';
import vm from 'node:vm';
import { failureLine, junitXml, writeJunitReport, type BatchSummary } from '../../src/batch/batch-report.js';
import { JUNIT_CASE_LIMITS, JunitBudget, renderTaskCases } from '../../src/batch/junit-cases.js';
import { globMatch } from '../../sandbox/step-reports.js';
import { parseJournalLine, testSummarySchema } from '../../src/batch/journal.js';
import { batchReportSchema } from '../../src/batch/report-file.js';
import { parseWith, pipelineSchema } from '../../src/config/task-spec.js';
import { JUNIT_LIMITS, parseJunit, TestReportError } from '../../src/tracing/junit-parse.js';
import { readProbeInputs } from '../../src/tracing/probe-inputs.js';
import { probeScores } from '../../src/tracing/probe-scores.js';
import { parseTap } from '../../src/tracing/tap-parse.js';
import { readTestResults, reportedTests, TEST_REPORT_LIMITS, type TestCaseResult, type TestResults } from '../../src/tracing/test-results.js';
import { validateAgainstSurefire } from '../helpers/junit-schema.js';
import { traceFixture } from '../helpers/trace-fixtures.js';
import { outcome } from '../helpers/batch-outcomes.js';

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
    ['an Object.prototype name as an entity', '<testsuites name="&toString;"/>', /unknown entity/],
    ['__proto__ as an entity', '<testsuites name="&__proto__;"/>', /unknown entity/],
    ['more attributes on an element than its limit', `<testsuites ${Array.from({ length: JUNIT_LIMITS.attributes + 1 }, (_, i) => `a${i}=""`).join(' ')}/>`, /more than 64 attributes/],
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

  it('refuses 8 MiB of attributes on one element at once, decoding none of them', () => {
    const attributes = Array.from({ length: 800_000 }, (_, i) => `a${i}="&amp;"`).join(' ');
    const started = performance.now();
    expect(() => parseJunit(`<testsuite ${attributes}><testcase name="t"/></testsuite>`)).toThrow('more than 64 attributes');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(parseJunit('<testsuite name="s" hostname="h" id="1"><testcase name="t" file="f.js" line="3"/></testsuite>')).toEqual([
      { suite: 's', classname: '', name: 't', status: 'passed', timeSec: null },
    ]);
  });

  it('keeps no string that pins the file’s text', () => {
    // A non-Latin-1 character makes the text two bytes a character: 16 MiB in memory for 8 MiB of file.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const file = () =>
      `<testsuite name="€ suite long enough"><testcase classname="a class long enough" name="a name longer than 13"><failure message="a message long enough">a body long enough</failure></testcase><!--${'x'.repeat(8 * 1024 * 1024)}--></testsuite>`;
    gc();
    const before = process.memoryUsage().heapUsed;
    const kept = Array.from({ length: 8 }, () => parseJunit(file()));
    gc();
    const retained = process.memoryUsage().heapUsed - before;
    expect(kept.flat().map((test) => test.name)).toHaveLength(8);
    // Without the copy, 8 × 16 MiB stay alive through the names, messages and bodies.
    expect(retained).toBeLessThan(16 * 1024 * 1024);
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
      junitCases: renderTaskCases(cases, 'asp.batch.b&lt;1&gt;.with tests', new JunitBudget()),
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
    const withTests = { ...report, list: { digest: `sha256:${'0'.repeat(64)}`, tasks: 1 }, shard: null, tasks: [{ ...tasks[1], junitCases: undefined }] };
    expect(batchReportSchema.parse(withTests).tasks[0]?.tests).toEqual(tasks[1]?.tests);
    const damaged = { ...withTests, tasks: [{ ...tasks[1], junitCases: undefined, tests: { ...tasks[1]?.tests, failing: 'all' } }] };
    expect(batchReportSchema.safeParse(damaged).success).toBe(false);
  });

  it('keeps the tests of a task in the journal, checked', () => {
    const tests = tasks[1]?.tests;
    const record = parseJournalLine(JSON.stringify({ event: 'end', key: 'k', at: '2026-12-01T00:00:00Z', attempt: 1, status: 'failed', tests }));
    expect(record?.tests).toEqual(tests);
    expect(parseJournalLine(JSON.stringify({ event: 'end', key: 'k', at: '2026-12-01T00:00:00Z', attempt: 1, status: 'failed', tests: { ...tests, total: -1 } }))).toBeUndefined();
  });
});

describe('the batch JUnit’s bounds', () => {
  const hostileCase = (index: number, status: TestCaseResult['status']): TestCaseResult => ({
    // A 1,024-character suite name of quotes, shared by every testcase without a classname: 6 times as long escaped.
    suite: '"'.repeat(1024),
    classname: '',
    name: `${'&'.repeat(1000)} ${index}`,
    status,
    timeSec: 1e300,
    message: '<'.repeat(1024),
    detail: '"'.repeat(4096),
  });
  const hostileCases = Array.from({ length: 10_000 }, (_, index) => hostileCase(index, index % 50 === 49 ? 'failed' : 'passed'));

  it('keeps a task’s failing testcases first, at most its number and bytes, and says how many it left out', () => {
    const rendered = renderTaskCases(hostileCases, 'asp.batch.b.k', new JunitBudget());
    expect(rendered.tests).toBeLessThanOrEqual(JUNIT_CASE_LIMITS.cases);
    expect(Buffer.byteLength(rendered.xml)).toBeLessThanOrEqual(JUNIT_CASE_LIMITS.taskBytes);
    expect(rendered.failures).toBe(rendered.tests);
    expect(rendered.omitted).toBe(10_000 - rendered.tests);
    const classnames = [...rendered.xml.matchAll(/classname="([^"]*)"/g)].map((match) => match[1] ?? '');
    expect(Math.max(...classnames.map((classname) => classname.replace(/&quot;/g, '"').length))).toBeLessThanOrEqual('asp.batch.b.k.'.length + JUNIT_CASE_LIMITS.classname);
    expect(rendered.xml).toContain('time="10000000.000"');
  });

  it('stays under a byte bound for 20 hostile tasks, and writes a well-formed file', async () => {
    const budget = new JunitBudget();
    const tasks = Array.from({ length: 20 }, (_, index) => outcome(`task ${index}`, 'failed', { junitCases: renderTaskCases(hostileCases, `asp.batch.b.task ${index}`, budget) }));
    const summary = { batchId: 'b', tasks, durationMs: 1 } as BatchSummary;
    const xml = junitXml(summary, new Date('2026-12-01T00:00:00Z'));
    expect(Buffer.byteLength(xml)).toBeLessThan(20 * (JUNIT_CASE_LIMITS.taskBytes + 4096));
    expect(xml).toContain('<property name="asp.omitted-testcases" value="');
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-junit-')), 'junit.xml');
    await writeJunitReport(file, summary, new Date('2026-12-01T00:00:00Z'));
    expect(validateAgainstSurefire(readFileSync(file, 'utf8'))).toMatchObject({ ok: true });
  });

  it('keeps no testcase past the batch’s budget', () => {
    const budget = new JunitBudget();
    budget.cases = 250;
    const small = hostileCases.map((test) => ({ ...test, suite: 's', name: 'n', message: 'm', detail: 'd' }));
    const first = renderTaskCases(small, 'p', budget);
    const second = renderTaskCases(small, 'p', budget);
    const third = renderTaskCases(small, 'p', budget);
    expect(first.tests + second.tests + third.tests).toBe(250);
    expect(third).toMatchObject({ tests: 0, xml: '', omitted: 10_000 });
  });

  it('writes hostile names well-formed: control characters, ]]>, quotes, lone surrogates, very long names', async () => {
    const names = ['a\u0000b\u0001c\u001f\u007f', 'x]]>y<![CDATA[z', `"'<>&amp;`, 'lone \ud800 high and \udc00 low', 'n'.repeat(100_000), '\ufffe\uffff'];
    const cases: TestCaseResult[] = names.map((name, index) => ({ suite: name, classname: index % 2 ? name : '', name, status: 'failed', timeSec: -1, message: name, type: name, detail: name }));
    const summary = {
      batchId: names[1],
      tasks: [outcome(names[0] ?? '', 'failed', { failure: names[3] ?? null, outputTail: names[1] ?? null, junitCases: renderTaskCases(cases, 'p', new JunitBudget()) })],
      durationMs: 1,
    } as BatchSummary;
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-junit-')), 'junit.xml');
    await writeJunitReport(file, summary, new Date('2026-12-01T00:00:00Z'));
    const written = readFileSync(file, 'utf8');
    expect(validateAgainstSurefire(written)).toMatchObject({ ok: true });
    expect(written).toContain('time="0.000"');
  });
});

describe('the tests a task reports', () => {
  const results = (where: string, files: number, failing: string[]): TestResults => {
    const cases: TestCaseResult[] = failing.map((name) => ({ suite: where, classname: where, name, status: 'failed', timeSec: null }));
    return {
      summary: {
        total: cases.length,
        passed: 0,
        failed: cases.length,
        errors: 0,
        skipped: 0,
        files: Array.from({ length: files }, (_, i) => `${where}/${i}.xml`),
        failing: cases.map((test) => ({ name: test.name, classname: test.classname, message: null })),
      },
      cases,
      byStep: [],
      problems: [],
    };
  };

  it('are the check’s alone when a clean-room check ran: the agent’s reports neither count nor name the first failure', () => {
    const tests = reportedTests(results('agent', 2, ['fabricated']), results('check', 1, ['real']), true);
    expect(tests?.summary.failing.map((test) => test.name)).toEqual(['real']);
    expect(tests?.cases.map((test) => test.name)).toEqual(['real']);
    expect(reportedTests(results('agent', 2, ['fabricated']), null, true)).toBeNull();
    expect(reportedTests(results('agent', 2, ['own']), null, false)?.summary.failing.map((test) => test.name)).toEqual(['own']);
  });

  it('fit the journal’s schema whatever the reports held', () => {
    const tests = reportedTests(
      results('agent', 64, []),
      results(
        'check',
        200,
        Array.from({ length: 80 }, (_, i) => `t${i}`),
      ),
      true,
    );
    expect(testSummarySchema.safeParse(tests?.summary).success).toBe(true);
    expect(parseJournalLine(JSON.stringify({ event: 'end', key: 'k', at: '2026-12-01T00:00:00Z', attempt: 1, status: 'failed', tests: tests?.summary }))?.tests?.files).toHaveLength(64);
  });
});

describe('the reports copy’s glob match', () => {
  it.each([
    ['*.xml', 'unit.xml', true],
    ['*.xml', 'unit.xml.bak', false],
    ['report-?.tap', 'report-1.tap', true],
    ['report-?.tap', 'report-12.tap', false],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'aXbY', false],
    ['*', '', true],
    ['x.[ab]+(y)', 'x.[ab]+(y)', true],
    ['**', 'anything', true],
  ])('matches %s against %s: %s', (pattern, name, matches) => {
    expect(globMatch(pattern, name)).toBe(matches);
  });

  it('takes linear time on a pattern a regex backtracks on without bound', () => {
    const started = performance.now();
    expect(globMatch(`${'*a'.repeat(60)}*c`, 'a'.repeat(250))).toBe(false);
    expect(performance.now() - started).toBeLessThan(500);
  });
});
