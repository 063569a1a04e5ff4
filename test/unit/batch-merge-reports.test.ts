import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchProgress } from '../../src/batch/batch-progress.js';
import type { BatchSummary, TaskOutcome } from '../../src/batch/batch-report.js';
import { batchIdFor } from '../../src/batch/journal.js';
import { mergeReports, type ReportInput } from '../../src/batch/merge-reports.js';
import { batchReportSchema } from '../../src/batch/report-file.js';
import { runBatch } from '../../src/batch/run-batch.js';
import { takeShard, type Shard } from '../../src/batch/shard.js';
import { readTaskList, type TaskList } from '../../src/batch/task-list.js';
import { readSettings } from '../../src/config/settings.js';
import { AspError } from '../../src/core/asp-error.js';
import { systemClock } from '../../src/core/clock.js';
import { silentLog } from '../../src/core/log.js';
import { asp } from '../helpers/cli.js';
import { FakeBackend } from '../helpers/fake-backend.js';
import { repoWith } from '../helpers/repos.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-merge-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string) => path.join(dir, name);
const DIGEST = `sha256:${'a'.repeat(64)}`;

function task(key: string, line: number, status: TaskOutcome['status'] = 'passed', extra: Partial<TaskOutcome> = {}): TaskOutcome {
  const exitCode = { passed: 0, awaiting_approval: 0, rejected: 0, failed: 1, timeout: 124, error: 3, interrupted: 130, 'not-run': null }[status];
  return {
    key,
    line,
    taskId: status === 'not-run' ? null : `task-${key}`,
    status,
    exitCode,
    durationMs: status === 'not-run' ? null : 1000,
    costUsd: null,
    traceId: null,
    artifactsDir: null,
    attempts: status === 'not-run' ? 0 : 1,
    failedStep: null,
    failure: status === 'failed' ? 'step test exited 1' : null,
    outputTail: null,
    error: status === 'error' ? 'Docker went away' : null,
    resumed: false,
    ...extra,
  };
}

/** A shard's report as asp batch writes it (its counts are not checked by the merge: it recomputes them). */
function report(shard: Shard | null, tasks: TaskOutcome[], extra: Partial<BatchSummary> = {}): BatchSummary {
  const batchId = `tasks-0123456789ab${shard ? `-shard-${shard.index}-of-${shard.count}` : ''}`;
  return {
    batchId,
    file: 'tasks.jsonl',
    journal: `/home/.asp/batches/${batchId}/journal.jsonl`,
    concurrency: 2,
    total: tasks.length,
    passed: 0,
    failed: 0,
    errors: 0,
    interrupted: 0,
    notRun: 0,
    invalid: 0,
    durationMs: 5000,
    exitCode: 0,
    list: { digest: DIGEST, tasks: 6 },
    shard,
    tasks,
    ...extra,
  };
}

const threeShards = (): ReportInput[] => [
  { file: 'report-0.json', report: report({ index: 0, count: 3 }, [task('a', 1), task('d', 4)], { durationMs: 4000 }) },
  { file: 'report-1.json', report: report({ index: 1, count: 3 }, [task('b', 2), task('e', 5, 'failed')], { durationMs: 9000, concurrency: 4 }) },
  { file: 'report-2.json', report: report({ index: 2, count: 3 }, [task('c', 3, 'awaiting_approval'), task('f', 6)], { durationMs: 7000 }) },
];

/** The AspError a call throws, so a test can look at its code, message and hint. */
function refusal(call: () => unknown): AspError {
  try {
    call();
  } catch (error) {
    if (error instanceof AspError) return error;
    throw error;
  }
  throw new Error('expected an AspError');
}

describe('merging the reports of the shards of a list', () => {
  it('lists every task once in the order of the list, recounts, and names each shard it was made of', () => {
    const { summary, warnings } = mergeReports(threeShards().reverse());
    expect(warnings).toEqual([]);
    expect(summary.tasks.map((entry) => entry.key)).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(summary).toMatchObject({
      batchId: 'tasks-0123456789ab',
      file: 'tasks.jsonl',
      journal: null,
      total: 6,
      passed: 5,
      failed: 1,
      errors: 0,
      interrupted: 0,
      notRun: 0,
      invalid: 0,
      exitCode: 1,
      concurrency: 8,
      durationMs: 9000,
      list: { digest: DIGEST, tasks: 6 },
      shard: null,
      missingShards: [],
    });
    expect(summary.shards).toEqual([
      {
        index: 0,
        count: 3,
        report: 'report-0.json',
        batchId: 'tasks-0123456789ab-shard-0-of-3',
        journal: '/home/.asp/batches/tasks-0123456789ab-shard-0-of-3/journal.jsonl',
        total: 2,
        exitCode: 0,
        durationMs: 4000,
      },
      {
        index: 1,
        count: 3,
        report: 'report-1.json',
        batchId: 'tasks-0123456789ab-shard-1-of-3',
        journal: '/home/.asp/batches/tasks-0123456789ab-shard-1-of-3/journal.jsonl',
        total: 2,
        exitCode: 0,
        durationMs: 9000,
      },
      {
        index: 2,
        count: 3,
        report: 'report-2.json',
        batchId: 'tasks-0123456789ab-shard-2-of-3',
        journal: '/home/.asp/batches/tasks-0123456789ab-shard-2-of-3/journal.jsonl',
        total: 2,
        exitCode: 0,
        durationMs: 7000,
      },
    ]);
    // The same shape as a batch's own report: what reads one reads the other.
    expect(batchReportSchema.safeParse(summary).success).toBe(true);
  });

  it.each([
    ['every task passed', [], 0],
    ['a task failed', [task('x', 9, 'failed')], 1],
    ['a line was invalid (shard 0 counts them)', [], 1, { invalid: 1 }],
    ['a line named a missing image', [task('x', 9, 'error', { exitCode: 2 })], 2],
    ['asp itself failed a task, after retries', [task('x', 9, 'error', { exitCode: 2 }), task('y', 10, 'error')], 3],
    ['a task was interrupted', [task('x', 9, 'interrupted'), task('y', 10, 'error')], 130],
  ] as Array<[string, TaskOutcome[], number, Partial<BatchSummary>?]>)('exits as asp batch would when %s', (_what, extra, exitCode, fields = {}) => {
    const inputs = [
      { file: 'r0.json', report: report({ index: 0, count: 2 }, [task('a', 1)], fields) },
      { file: 'r1.json', report: report({ index: 1, count: 2 }, [task('b', 2), ...extra]) },
    ];
    expect(mergeReports(inputs).summary.exitCode).toBe(exitCode);
  });

  it('keeps the 130 of a shard interrupted before any of its tasks started', () => {
    const inputs = [
      { file: 'r0.json', report: report({ index: 0, count: 2 }, [task('a', 1)]) },
      { file: 'r1.json', report: report({ index: 1, count: 2 }, [task('b', 2, 'not-run')], { exitCode: 130 }) },
    ];
    expect(mergeReports(inputs).summary).toMatchObject({ notRun: 1, exitCode: 130 });
  });

  it('warns of a shard no report covers and merges the rest', () => {
    const { summary, warnings } = mergeReports([threeShards()[0] as ReportInput, threeShards()[2] as ReportInput]);
    expect(warnings).toEqual(["no report of shard(s) 1/3: their tasks are not in the merged report (4 of the list's 6 are)"]);
    expect(summary).toMatchObject({ total: 4, missingShards: [1], exitCode: 0 });
  });

  it('takes a merged report as one input, with the shards it lists', () => {
    const [zero, one, two] = threeShards() as [ReportInput, ReportInput, ReportInput];
    const partial = mergeReports([zero, one]).summary;
    const { summary, warnings } = mergeReports([{ file: 'partial.json', report: partial }, two]);
    expect(warnings).toEqual([]);
    expect(summary).toEqual(mergeReports([zero, one, two]).summary);
  });

  it('reads the report of a whole list as shard 0 of 1', () => {
    const { summary } = mergeReports([{ file: 'whole.json', report: report(null, [task('a', 1)], { list: { digest: DIGEST, tasks: 1 } }) }]);
    expect(summary).toMatchObject({ total: 1, missingShards: [], shards: [{ index: 0, count: 1, report: 'whole.json' }] });
  });

  it('takes a task reported twice with the same outcome once', () => {
    const inputs = threeShards();
    inputs[1]?.report.tasks.push(task('a', 1));
    expect(mergeReports(inputs).summary.tasks.map((entry) => entry.key)).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
  });

  it('refuses a task with two different outcomes, naming it and both files', () => {
    const inputs = threeShards();
    inputs[2]?.report.tasks.push(task('b', 2, 'failed'));
    const error = refusal(() => mergeReports(inputs));
    expect(error).toMatchObject({ code: 'BAD_INPUT', message: 'task "b" is in both report-1.json and report-2.json, with different outcomes' });
  });

  it('refuses reports of different task lists', () => {
    const inputs = threeShards();
    (inputs[1] as ReportInput).report.list = { digest: `sha256:${'b'.repeat(64)}`, tasks: 6 };
    expect(refusal(() => mergeReports(inputs)).message).toBe('report-0.json and report-1.json are reports of different task lists (sha256:aaaaaaaaaaaa and sha256:bbbbbbbbbbbb)');
  });

  it('refuses shards of different counts', () => {
    const inputs = [threeShards()[0] as ReportInput, { file: 'other.json', report: report({ index: 1, count: 4 }, [task('b', 2)]) }];
    expect(refusal(() => mergeReports(inputs)).message).toBe('report-0.json is of shard(s) of 3 but other.json is shard 1/4');
  });

  it('refuses one shard given twice', () => {
    const inputs = [...threeShards(), { file: 'again.json', report: report({ index: 1, count: 3 }, []) }];
    expect(refusal(() => mergeReports(inputs)).message).toBe('shard 1/3 is in both report-1.json and again.json');
  });
});

describe('shards run through the batch, then merged', () => {
  let repo: string;
  beforeAll(() => {
    repo = repoWith({ 'README.md': 'shards\n' });
  });

  async function runShard(list: TaskList, file: string, home: string, shard: Shard, resume = false): Promise<BatchSummary> {
    const settings = readSettings({ PATH: process.env.PATH, HOME: home, ASP_HOME: path.join(home, 'asp'), ASP_WORKSPACES: path.join(home, 'workspaces') });
    return runBatch(
      takeShard(list, shard),
      {
        file,
        batchId: batchIdFor(file, readFileSync(file, 'utf8'), shard),
        concurrency: 2,
        resume,
        retries: 0,
        backoffMs: 1,
        engineWaitMs: 1000,
        invalidCount: takeShard(list, shard).invalid.length,
        listIdentity: { digest: list.digest, tasks: list.entries.length },
        shard,
      },
      {
        backend: new FakeBackend({ steps: { broken: { exitCode: 4, output: 'no\n' } } }),
        settings,
        clock: systemClock,
        log: silentLog,
        cwd: path.dirname(file),
        progress: batchProgress(0, { tty: false, write: () => {} }),
        traceMode: 'off',
      },
    );
  }

  it('gives one report of the whole list, each shard with its own journal under one ASP_HOME, and --resume per shard', async () => {
    const lines = Array.from({ length: 7 }, (_, index) =>
      JSON.stringify(index % 3 === 0 ? { repo, steps: [{ name: index === 3 ? 'broken' : 'work', run: 'true' }] } : { id: `task-${index}`, repo, steps: [{ name: 'work', run: 'true' }] }),
    );
    const file = at('shards.jsonl');
    writeFileSync(file, [...lines, '{not json'].join('\n') + '\n');
    const list = await readTaskList(file);
    const home = mkdtempSync(path.join(dir, 'home-'));
    const reports = await Promise.all([0, 1, 2].map((index) => runShard(list, file, home, { index, count: 3 })));

    expect(reports.reduce((sum, entry) => sum + entry.total, 0)).toBe(7);
    expect(readdirSync(path.join(home, 'asp', 'batches')).sort()).toEqual(reports.map((entry) => entry.batchId).sort());
    const { summary, warnings } = mergeReports(reports.map((entry, index) => ({ file: `report-${index}.json`, report: entry })));
    expect(warnings).toEqual([]);
    expect(summary.tasks.map((entry) => entry.line)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(summary).toMatchObject({ total: 7, passed: 6, failed: 1, invalid: 1, exitCode: 1, list: { digest: list.digest, tasks: 7 }, missingShards: [] });
    expect(summary.tasks.find((entry) => entry.line === 4)).toMatchObject({ key: 'line-4', status: 'failed', failedStep: 'broken' });

    // Each shard resumes from its own journal: nothing runs again, and nothing of another shard comes in.
    const again = await Promise.all([0, 1, 2].map((index) => runShard(list, file, home, { index, count: 3 }, true)));
    expect(again.map((entry) => entry.tasks.map((outcome) => outcome.key))).toEqual(reports.map((entry) => entry.tasks.map((outcome) => outcome.key)));
    expect(again.flatMap((entry) => entry.tasks).every((outcome) => outcome.resumed)).toBe(true);
  }, 60_000);
});

describe('asp batch --shard and asp batch merge-reports, as a user runs them', () => {
  beforeAll(() => {
    if (!existsSync(path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs'))) throw new Error('these tests run the built CLI: npm run build first');
  });

  const list = () => {
    const file = at('cli-tasks.jsonl');
    writeFileSync(file, ['{"id": "alpha", "repo": "."}', '{"id": "beta", "repo": "."}', '{"id": "gamma", "repo": "."}'].join('\n') + '\n');
    return file;
  };
  const write = (name: string, value: unknown) => {
    writeFileSync(at(name), typeof value === 'string' ? value : JSON.stringify(value));
    return at(name);
  };
  const oneLineError = (stderr: string) => {
    expect(stderr.trim().split('\n')).toHaveLength(1);
    return stderr.trim();
  };

  it.each([
    ['3/3', 'the shard index 3 is not below the count 3'],
    ['-1/2', 'the shard index -1 is below 0'],
    ['0/0', 'the shard count 0 must be at least 1'],
    ['a/b', 'is not of the form i/n'],
    ['1', 'is not of the form i/n'],
  ])('refuses --shard %s in one line, exit 2, before reading the list', async (shard, problem) => {
    const result = await asp(['batch', at('not-there.jsonl'), '--shard', shard]);
    expect(result.code).toBe(2);
    const line = oneLineError(result.stderr);
    expect(line).toContain(`asp: error: --shard "${shard}"`);
    expect(line).toContain(problem);
    expect(line).toContain('pass --shard i/n with 0 <= i < n');
  });

  it('refuses a bad ASP_SHARD the same way, and lets --shard win over it', async () => {
    const bad = await asp(['batch', list(), '--json'], { ASP_SHARD: '2/2' });
    expect(bad.code).toBe(2);
    expect(oneLineError(bad.stderr)).toContain('asp: error: ASP_SHARD "2/2": the shard index 2 is not below the count 2');
    expect(JSON.parse(bad.stdout)).toMatchObject({ status: 'error', exitCode: 2, error: { code: 'BAD_INPUT' } });
  });

  it('runs an empty shard as a success with 0 tasks, without an engine, and reports it for the merge', async () => {
    // alpha, beta and gamma all hash to other shards of 16 than the one asked for here.
    const file = list();
    const parsed = await readTaskList(file);
    const empty = Array.from({ length: 16 }, (_, index) => index).find((index) => takeShard(parsed, { index, count: 16 }).entries.length === 0) ?? -1;
    const home = mkdtempSync(path.join(dir, 'cli-home-'));
    const result = await asp(['batch', file, '--shard', `${empty}/16`, '--report', at('empty.json')], { ASP_HOME: home, DOCKER_HOST: 'unix:///nonexistent.sock' });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(`shard ${empty}/16 takes none of the list's 3 task(s): nothing to run`);
    expect(result.stderr).toContain(`asp batch: shard ${empty}/16: 0 passed, 0 failed, 0 errors, 0 not finished of 0`);
    const written = JSON.parse(readFileSync(at('empty.json'), 'utf8'));
    expect(written).toMatchObject({ total: 0, exitCode: 0, tasks: [], shard: { index: empty, count: 16 }, list: { digest: parsed.digest, tasks: 3 } });
    expect(written.batchId).toMatch(new RegExp(`^cli-tasks-[0-9a-f]{12}-shard-${empty}-of-16$`));
  });

  it('merges shard reports into one file and prints it with --json', async () => {
    const inputs = threeShards().map((input) => write(input.file, input.report));
    const out = at('merged.json');
    const result = await asp(['batch', 'merge-reports', out, ...inputs, '--json']);
    expect(result.code).toBe(1);
    const printed = JSON.parse(result.stdout);
    expect(printed).toEqual(JSON.parse(readFileSync(out, 'utf8')));
    expect(printed).toMatchObject({ total: 6, passed: 5, failed: 1, exitCode: 1, missingShards: [] });
    expect(printed.shards.map((shard: { report: string }) => shard.report)).toEqual(inputs);

    const plain = await asp(['batch', 'merge-reports', out, ...inputs]);
    expect(plain.stdout).toBe('');
    expect(plain.stderr).toBe(`asp batch merge-reports: 3 of 3 shard(s): 5 passed, 1 failed, 0 errors, 0 not finished of 6; wrote ${out} (exit code 1)\n`);
  });

  it('warns of a missing shard on stderr and still merges', async () => {
    const [zero, , two] = threeShards().map((input) => write(input.file, input.report));
    const result = await asp(['batch', 'merge-reports', at('partial.json'), zero as string, two as string]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("asp: warning: no report of shard(s) 1/3: their tasks are not in the merged report (4 of the list's 6 are)");
    expect(JSON.parse(readFileSync(at('partial.json'), 'utf8'))).toMatchObject({ total: 4, missingShards: [1] });
  });

  const [zero, one] = threeShards() as [ReportInput, ReportInput];
  const { list: _list, ...withoutList } = zero.report;
  it.each([
    ['a missing file', () => [at('nothing-here.json')], /^asp: error: cannot read batch report .*nothing-here\.json: ENOENT/],
    ['a file that is not JSON', () => [write('torn.json', '{"batchId": "x", "tas')], /^asp: error: batch report .*torn\.json is not JSON — /],
    [
      'JSON that is not a batch report',
      () => [write('other.json', { hello: 'world' })],
      /^asp: error: .*other\.json is not an asp batch report: batchId is required; file is required; journal is required — /,
    ],
    ['a task with a status asp does not write', () => [write('status.json', { ...zero.report, tasks: [{ ...task('a', 1), status: 'great' }] })], /is not an asp batch report: tasks\.0\.status /],
    ['a report of an asp from before --shard', () => [write('old.json', withoutList)], /is a batch report of an asp from before --shard: it does not say which task list it is of/],
    [
      'reports of different lists',
      () => [write('r0.json', zero.report), write('r1.json', { ...one.report, list: { digest: `sha256:${'c'.repeat(64)}`, tasks: 6 } })],
      /^asp: error: .*r0\.json and .*r1\.json are reports of different task lists \(sha256:aaaaaaaaaaaa and sha256:cccccccccccc\) — /,
    ],
    [
      'one task with two outcomes',
      () => [write('r0.json', zero.report), write('r1.json', { ...one.report, tasks: [...one.report.tasks, task('a', 1, 'failed')] })],
      /^asp: error: task "a" is in both .*r0\.json and .*r1\.json, with different outcomes — /,
    ],
    ['an option of asp batch itself', () => ['--shard', '0/2', write('r0.json', zero.report)], /^asp: error: asp batch merge-reports does not take --shard — /],
  ])('refuses %s in one line, exit 2, and writes nothing', async (_what, args, problem) => {
    const out = at(`never-${Math.random().toString(36).slice(2)}.json`);
    const result = await asp(['batch', 'merge-reports', out, ...args()]);
    expect(result.code).toBe(2);
    expect(oneLineError(result.stderr)).toMatch(problem);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses an out file it cannot write as bad input, and leaves no temporary file behind', async () => {
    const input = write('r0.json', zero.report);
    const missing = await asp(['batch', 'merge-reports', at('no-such-dir/out.json'), input]);
    expect(missing.code).toBe(2);
    expect(oneLineError(missing.stderr)).toMatch(/^asp: error: cannot write the report .*no-such-dir\/out\.json: its directory does not exist — /);

    // The temporary file is written beside a directory, then cannot be renamed over it: it is removed again.
    const folder = mkdtempSync(path.join(dir, 'a-dir-'));
    const taken = await asp(['batch', 'merge-reports', folder, input]);
    expect(taken.code).toBe(2);
    expect(oneLineError(taken.stderr)).toMatch(/^asp: error: cannot write the report .*a-dir-\w+: it is a directory — /);
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('asks for at least one report', async () => {
    const result = await asp(['batch', 'merge-reports', at('out.json')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("missing required argument 'reports'");
  });
});
