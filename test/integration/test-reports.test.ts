import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, describe, expect, it } from 'vitest';
import { asp } from '../helpers/cli.js';
import { dockerAvailable, leftovers } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';
import { validateAgainstSurefire } from '../helpers/junit-schema.js';

const FIXTURES = path.resolve(import.meta.dirname, '..', 'fixtures', 'test-reports');

interface ReportTask {
  key: string;
  status: string;
  failure: string | null;
  artifactsDir: string;
  tests?: { total: number; passed: number; failed: number; errors: number; skipped: number; files: string[]; failing: Array<{ name: string; classname: string; message: string | null }> } | null;
}

/**
 * A repository whose test step writes JUnit (as node --test --test-reporter=junit would) into $ASP_ARTIFACTS/junit/,
 * or TAP into its own tree (named by "reports"), or nothing, or result files built to hurt the host.
 */
const repo = repoWith({
  'fixtures/junit.xml': readFileSync(path.join(FIXTURES, 'sample-junit.xml')),
  'fixtures/out.tap': readFileSync(path.join(FIXTURES, 'sample.tap')),
  'README.md': 'test reports\n',
});

const hostile = [
  'mkdir -p "$ASP_ARTIFACTS/junit"',
  // 9 MB of spaces: past the 8 MiB cap per file.
  `head -c 9000000 /dev/zero | tr '\\0' ' ' > "$ASP_ARTIFACTS/junit/huge.xml"`,
  `printf '<testsuites>' > "$ASP_ARTIFACTS/junit/deep.xml"; i=0; while [ $i -lt 3000 ]; do printf '<testsuite>'; i=$((i+1)); done >> "$ASP_ARTIFACTS/junit/deep.xml"`,
  `printf '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><testsuites name="&c;"/>' > "$ASP_ARTIFACTS/junit/lol.xml"`,
  `printf '<testsuite name="\\303\\050"/>' > "$ASP_ARTIFACTS/junit/utf8.xml"`,
  'ln -s /etc/passwd "$ASP_ARTIFACTS/junit/link.xml"',
  // Named by "reports": one too big to copy, and a FIFO that would block whoever opened it.
  'mkdir -p out && head -c 9000000 /dev/zero > out/big.xml && mkfifo out/fifo.xml',
  'exit 1',
].join('\n');

describe.skipIf(!dockerAvailable)("the repository's own test results through asp batch", () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('carries JUnit and TAP into the batch JUnit, the report, the failure line and the trace; refuses hostile files', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-test-reports-'));
    const env = { ASP_HOME: path.join(dir, 'home'), ASP_WORKSPACES: path.join(dir, 'ws'), CI: 'true' };
    const lines = [
      { id: 'junit', repo, steps: [{ name: 'test', run: 'mkdir -p "$ASP_ARTIFACTS/junit" && cp fixtures/junit.xml "$ASP_ARTIFACTS/junit/unit.xml" && echo "1 failing" && exit 1' }] },
      {
        id: 'tap',
        repo,
        steps: [
          {
            name: 'test',
            run: 'mkdir -p test-results && cp fixtures/out.tap test-results/out.tap && ln -s /etc/shadow test-results/x.tap && ln -s /etc etc-link',
            reports: ['test-results/*.tap', 'etc-link/*'],
          },
        ],
      },
      { id: 'nothing', repo, steps: [{ name: 'test', run: 'echo no reports; exit 3' }] },
      { id: 'hostile', repo, steps: [{ name: 'test', run: hostile, reports: ['out/*.xml'] }] },
    ];
    writeFileSync(path.join(dir, 'tasks.jsonl'), lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const junitFile = path.join(dir, 'junit.xml');
    const reportFile = path.join(dir, 'report.json');
    const result = await asp(['batch', path.join(dir, 'tasks.jsonl'), '--concurrency', '2', '--report', reportFile, '--junit', junitFile], env);
    expect(result.code, result.stderr).toBe(1);

    const report = JSON.parse(readFileSync(reportFile, 'utf8'));
    const task = (key: string): ReportTask => report.tasks.find((entry: ReportTask) => entry.key === key);

    // The report lists each task's failing tests, and the failure line names the first.
    expect(task('junit').tests).toEqual({
      total: 4,
      passed: 2,
      failed: 1,
      errors: 0,
      skipped: 1,
      files: ['junit/unit.xml'],
      failing: [{ name: 'divides', classname: 'math', message: 'expected 2, got 3' }],
    });
    const artifacts = task('junit').artifactsDir;
    expect(task('junit').failure).toBe(`step test exited 1; first failing test: math > divides (expected 2, got 3); 1 of 4 tests failed; full log: ${artifacts}/events.jsonl, ${artifacts}/test.json`);
    // "reports" globs: copied by the runner into .asp/reports/<step>/, the link left behind.
    expect(task('tap')).toMatchObject({ status: 'passed', tests: { total: 4, passed: 1, failed: 1, skipped: 2, files: ['reports/test/test-results__out.tap'] } });
    expect(task('nothing').tests).toBeNull();
    expect(task('nothing').failure).toBe(`step test exited 3; full log: ${task('nothing').artifactsDir}/events.jsonl, ${task('nothing').artifactsDir}/test.json`);
    // Every hostile file refused, each said once, and the report stays small.
    expect(task('hostile').tests).toMatchObject({ total: 0, files: [] });
    const warnings: string[] = JSON.parse(readFileSync(path.join(task('hostile').artifactsDir, 'result.json'), 'utf8')).warnings;
    const refused = warnings.filter((line) => line.startsWith('test report '));
    expect(refused).toEqual([
      expect.stringMatching(/deep\.xml refused: nested deeper than 32/),
      expect.stringMatching(/huge\.xml refused: 9000000 bytes, more than 8388608/),
      expect.stringMatching(/lol\.xml refused: has a DOCTYPE declaration/),
      expect.stringMatching(/utf8\.xml refused: not valid UTF-8/),
    ]);
    expect(warnings).toContainEqual('sandbox: reports of step "test": out/big.xml: 9000000 bytes, more than 8388608: not copied');
    expect(warnings.filter((line) => line.includes('fifo'))).toEqual([]);
    const tapWarnings: string[] = JSON.parse(readFileSync(path.join(task('tap').artifactsDir, 'result.json'), 'utf8')).warnings;
    expect(tapWarnings).toContainEqual('sandbox: reports of step "test": test-results/x.tap: a link, not copied');
    expect(statSync(reportFile).size).toBeLessThan(64 * 1024);
    // A step's "reports" are its own: on the step's span in the trace, and a directory link in the glob is not followed.
    const tapTrace = JSON.parse(readFileSync(path.join(task('tap').artifactsDir, 'trace.json'), 'utf8'));
    const tapStep = tapTrace.observations.find((observation: { metadata: { kind?: string } }) => observation.metadata.kind === 'step');
    expect(tapStep.metadata.tests).toMatchObject({ total: 4, failed: 1, failing: ['test-results__out > prints'] });

    // The merged JUnit: well-formed, Surefire's shape, the repository's testcases inside the task's suite.
    const xml = readFileSync(junitFile, 'utf8');
    expect(XMLValidator.validate(xml)).toBe(true);
    expect(validateAgainstSurefire(xml)).toMatchObject({ ok: true });
    const parsed = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (name) => name === 'testsuite' || name === 'testcase' }).parse(xml);
    const suites = parsed.testsuites.testsuite as Array<{
      name: string;
      tests: string;
      failures: string;
      skipped: string;
      testcase: Array<{ name: string; classname: string; failure?: { message: string; '#text'?: string } }>;
    }>;
    expect(parsed.testsuites).toMatchObject({ tests: String(2 + 5 + 5), failures: String(2 + 2 + 1), skipped: String(1 + 2) });
    const junitSuite = suites.find((suite) => suite.name.endsWith('.junit'));
    expect(junitSuite).toMatchObject({ tests: '5', failures: '2', skipped: '1' });
    expect(junitSuite?.testcase.map((test) => test.name)).toEqual(['junit', 'adds', 'subtracts & rounds', 'divides', 'later']);
    expect(junitSuite?.testcase[0]?.failure?.message).toBe(task('junit').failure);
    expect(junitSuite?.testcase[0]?.failure?.['#text']).toContain('1 failing');
    expect(junitSuite?.testcase[3]?.failure?.message).toBe('expected 2, got 3');
    const plain = suites.find((suite) => !suite.name.includes('.'));
    expect(plain?.testcase.map((test) => test.name).sort()).toEqual(['hostile', 'nothing']);

    // The trace: the step span carries the counts and the failing names; probe_accuracy is passed ÷ total.
    const trace = JSON.parse(readFileSync(path.join(artifacts, 'trace.json'), 'utf8'));
    const step = trace.observations.find((observation: { metadata: { kind?: string } }) => observation.metadata.kind === 'step');
    expect(step.metadata.tests).toEqual({ total: 4, passed: 2, failed: 1, errors: 0, skipped: 1, failing: ['math > divides'], files: ['junit/unit.xml'] });
    expect(trace.scores.find((score: { name: string }) => score.name === 'probe_accuracy')).toMatchObject({ value: 0.5, comment: "2/4 tests passed (the steps' JUnit/TAP reports)" });
  }, 240_000);

  it("takes a clean-room check's reports as the verdict's: probe_accuracy from them, the failure line naming its test", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-test-reports-check-'));
    const env = { ASP_HOME: path.join(dir, 'home'), ASP_WORKSPACES: path.join(dir, 'ws'), CI: 'true' };
    const junit = (failing: boolean) =>
      `<testsuite name="s"><testcase classname="calc" name="adds"/><testcase classname="calc" name="rounds">${failing ? '<failure message="off by one"/>' : ''}</testcase></testsuite>`;
    const line = {
      id: 'checked',
      repo,
      // The agent's own report claims a pass and plants a failing test of its choosing: neither may be reported.
      steps: [
        {
          name: 'agent',
          run: `mkdir -p "$ASP_ARTIFACTS/junit" && echo '${junit(false).replace('<testsuite name="s">', '<testsuite name="s"><testcase classname="planted" name="fabricated"><failure message="planted"/></testcase>')}' > "$ASP_ARTIFACTS/junit/claim.xml"`,
        },
      ],
      check: [{ name: 'tests', run: `mkdir -p out && echo '${junit(true)}' > out/check.xml; exit 1`, reports: ['out/*.xml'] }],
    };
    writeFileSync(path.join(dir, 'tasks.jsonl'), JSON.stringify(line) + '\n');
    const reportFile = path.join(dir, 'report.json');
    const junitFile = path.join(dir, 'junit.xml');
    const result = await asp(['batch', path.join(dir, 'tasks.jsonl'), '--report', reportFile, '--junit', junitFile], env);
    expect(result.code, result.stderr).toBe(1);
    const [task] = JSON.parse(readFileSync(reportFile, 'utf8')).tasks as ReportTask[];
    // With a check, its reports alone: not the agent's claim, nor the sum of both.
    expect(task?.tests).toEqual({
      total: 2,
      passed: 1,
      failed: 1,
      errors: 0,
      skipped: 0,
      files: ['check/reports/tests/out__check.xml'],
      failing: [{ name: 'rounds', classname: 'calc', message: 'off by one' }],
    });
    const artifacts = task?.artifactsDir ?? '';
    expect(task?.failure).toBe(`step check:tests exited 1; first failing test: calc > rounds (off by one); 1 of 2 tests failed; full log: ${artifacts}/events.jsonl, ${artifacts}/check/tests.json`);
    const junitText = readFileSync(junitFile, 'utf8');
    expect(junitText).toContain('name="rounds"');
    expect(junitText).not.toContain('fabricated');
    const trace = JSON.parse(readFileSync(path.join(artifacts, 'trace.json'), 'utf8'));
    const span = (name: string) => trace.observations.find((observation: { name: string; metadata: { kind?: string } }) => observation.metadata.kind === 'step' && observation.name === name);
    expect(span('agent')?.metadata.tests).toMatchObject({ total: 3, failed: 1, failing: ['planted > fabricated'] });
    expect(span('check:tests')?.metadata.tests).toMatchObject({ total: 2, failed: 1, failing: ['calc > rounds'] });
    // The check decides: its 1 of 2, not the agent's 2 of 2 nor the 3 of 4 of both.
    expect(trace.scores.find((score: { name: string }) => score.name === 'probe_accuracy')).toMatchObject({ value: 0.5 });
  }, 240_000);
});
