import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { batchProgress } from '../../src/batch/batch-progress.js';
import { escapeXml, junitXml, type BatchSummary } from '../../src/batch/batch-report.js';
import { BatchJournal, batchIdFor } from '../../src/batch/journal.js';
import { defaultConcurrency } from '../../src/batch/run-batch.js';
import { readTaskList } from '../../src/batch/task-list.js';
import { outcome } from '../helpers/batch-outcomes.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-batch-unit-'));
const file = (name: string, content: string) => {
  writeFileSync(path.join(dir, name), content);
  return path.join(dir, name);
};

describe('task lists', () => {
  it('reads JSON lines, skipping blanks and comments, and keys tasks by id or line', async () => {
    const list = await readTaskList(file('ok.jsonl', '{"repo":"a","id":"first"}\n\n# note\n{"repo":"b","steps":[{"name":"t","run":"true"}]}\n'));
    expect(list.invalid).toEqual([]);
    expect(list.entries.map((entry) => [entry.key, entry.line, entry.spec.repo])).toEqual([
      ['first', 1, 'a'],
      ['line-4', 4, 'b'],
    ]);
  });

  it('reads a JSON array', async () => {
    const list = await readTaskList(file('ok.json', '[{"repo":"a"},{"repo":"b"}]'));
    expect(list.entries.map((entry) => entry.key)).toEqual(['line-1', 'line-2']);
  });

  it('reports every bad line with its number', async () => {
    const list = await readTaskList(file('bad.jsonl', ['{"repo":"a"}', '{not json', '{"repo":5}', '{"repo":"a","id":"x"}', '{"repo":"b","id":"x"}', '{"repo":"c","memory":"2g"}'].join('\n')));
    expect(list.entries.map((entry) => entry.line)).toEqual([1, 4]);
    expect(list.invalid.map((entry) => entry.line)).toEqual([2, 3, 5, 6]);
    expect(list.invalid[0]?.message).toMatch(/^not valid JSON/);
    expect(list.invalid[1]?.message).toMatch(/^repo /);
    expect(list.invalid[2]?.message).toBe('id "x" is used on line 4 already');
    expect(list.invalid[3]?.message).toContain('unknown field(s) "memory"');
  });

  it.each([
    ['a missing file', path.join(dir, 'missing.jsonl'), 'cannot read task list'],
    ['an empty file', 'empty', 'has no tasks'],
    ['a broken array', 'broken', 'is not valid JSON'],
  ])('refuses %s', async (_what, name, message) => {
    const target = name === 'empty' ? file('empty.jsonl', '\n# nothing\n') : name === 'broken' ? file('broken.json', '[{"repo":') : name;
    await expect(readTaskList(target)).rejects.toThrow(message);
  });
});

describe('batch journal', () => {
  it('remembers finished tasks and ignores a torn last line', () => {
    const journal = new BatchJournal(path.join(dir, 'home'), 'b1');
    const at = '2025-01-01T00:00:00.000Z';
    journal.append({ event: 'start', key: 'a', at, attempt: 1 });
    journal.append({ event: 'end', key: 'a', at, attempt: 1, status: 'passed', exitCode: 0 });
    journal.append({ event: 'end', key: 'b', at, attempt: 1, status: 'interrupted', exitCode: 130 });
    journal.append({ event: 'end', key: 'c', at, attempt: 1, status: 'error', exitCode: 3 });
    journal.append({ event: 'end', key: 'd', at, attempt: 1, status: 'failed', exitCode: 1 });
    appendFileSync(journal.file, '{"event":"end","key":"e","sta');
    const { done, damaged } = new BatchJournal(path.join(dir, 'home'), 'b1').finished();
    expect([...done.keys()].sort()).toEqual(['a', 'd']);
    expect(damaged).toBe(0);
  });

  it('names a batch by its file and content', () => {
    expect(batchIdFor('/x/tasks.jsonl', 'a')).toMatch(/^tasks-[0-9a-f]{12}$/);
    expect(batchIdFor('/x/tasks.jsonl', 'a')).toBe(batchIdFor('/x/tasks.jsonl', 'a'));
    expect(batchIdFor('/x/tasks.jsonl', 'a')).not.toBe(batchIdFor('/x/tasks.jsonl', 'b'));
  });
});

describe('JUnit report', () => {
  it('is valid XML with one testcase per task and the failing step as the message', () => {
    const tasks = [
      outcome('ok', 'passed'),
      outcome('bad <one>', 'failed', { failedStep: 'test', failure: 'step test exited 3', outputTail: 'expected 1 & got 2 \u0007bell' }),
      outcome('late', 'timeout', { failure: 'step slow passed its deadline' }),
      outcome('infra', 'error', { exitCode: 3, error: 'Docker "down"' }),
      outcome('never', 'not-run'),
    ];
    const summary = { batchId: 'b', tasks, durationMs: 9000 } as BatchSummary;
    const xml = junitXml(summary, new Date('2026-11-28T00:00:00Z'));
    expect(XMLValidator.validate(xml)).toBe(true);
    const parsed = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(xml);
    const suite = parsed.testsuites.testsuite;
    expect(suite).toMatchObject({ tests: '5', failures: '2', errors: '1', skipped: '1', time: '9.000' });
    expect(suite.testcase).toHaveLength(5);
    expect(suite.testcase[1]).toMatchObject({ name: 'bad <one>', failure: { message: 'step test exited 3', type: 'failed', '#text': 'expected 1 & got 2 bell' } });
    expect(suite.testcase[2].failure.message).toBe('step slow passed its deadline');
    expect(suite.testcase[3].error.message).toBe('Docker "down"');
    expect(suite.testcase[4].skipped.message).toBe('not run');
  });

  it('escapes markup and drops characters XML cannot carry', () => {
    expect(escapeXml(`<a b="c">'&'\u0000`)).toBe('&lt;a b=&quot;c&quot;&gt;&apos;&amp;&apos;');
  });
});

describe('batch progress', () => {
  it('prints one line per finished task outside a terminal', () => {
    let out = '';
    let now = 0;
    const progress = batchProgress(2, { tty: false, write: (text) => (out += text), now: () => now });
    progress.started('a');
    progress.started('b');
    now = 30_000;
    progress.finished(outcome('a', 'passed'));
    progress.finished(outcome('b', 'failed', { failure: 'step t exited 1' }));
    progress.close();
    expect(out.split('\n')).toEqual(['asp batch: [1/2] a passed in 1.5s', 'asp batch: [2/2] b failed in 1.5s (step t exited 1)', 'asp batch: 2/2 done, 0 running, 1 failed, 4.0/min, ETA 0ms', '']);
  });
});

describe('batch progress with --resume', () => {
  it('does not count a task taken from the journal as running', () => {
    let out = '';
    const progress = batchProgress(2, { tty: false, write: (text) => (out += text), now: () => 0 });
    progress.finished(outcome('a', 'passed', { resumed: true }));
    progress.started('b');
    progress.finished(outcome('b', 'passed'));
    progress.close();
    expect(out).toContain('asp batch: [1/2] a passed in 1.5s [from journal]');
    expect(out.trim().split('\n').pop()).toBe('asp batch: 2/2 done (1 from journal), 0 running, 0 failed, 0.0/min, ETA ?');
  });

  it("counts only this run's work in the rate and the ETA: tasks from the journal took no time here", () => {
    let out = '';
    let now = 0;
    const progress = batchProgress(5, { tty: false, write: (text) => (out += text), now: () => now });
    // --resume hands over the journal's tasks at once, at the start: not 3 tasks in no time.
    for (const key of ['a', 'b', 'c']) progress.finished(outcome(key, 'passed', { resumed: true }));
    progress.started('d');
    now = 30_000;
    progress.finished(outcome('d', 'passed'));
    progress.close();
    expect(out.trim().split('\n').pop()).toBe('asp batch: 4/5 done (3 from journal), 0 running, 0 failed, 2.0/min, ETA 30.0s');
  });

  it('says a batch taken whole from the journal did no work, instead of an absurd rate', () => {
    let out = '';
    let now = 0;
    const progress = batchProgress(2, { tty: false, write: (text) => (out += text), now: () => now });
    now = 15;
    progress.finished(outcome('a', 'passed', { resumed: true }));
    progress.finished(outcome('b', 'passed', { resumed: true }));
    progress.close();
    expect(out.trim().split('\n').pop()).toBe('asp batch: 2/2 done (2 from journal), 0 running, 0 failed, 0.0/min, ETA ?');
  });
});

describe('default concurrency', () => {
  it('never exceeds the cores and is at least 1', () => {
    const entry = (memory: number) => ({ key: 'k', line: 1, spec: { limits: { memory } } }) as never;
    expect(defaultConcurrency([entry(1024 ** 3)])).toBeLessThanOrEqual(os.availableParallelism());
    expect(defaultConcurrency([entry(1024 ** 5)])).toBe(1);
  });
});
