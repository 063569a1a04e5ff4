import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import { BatchJournal, batchIdFor, unshardedBatchId } from '../../src/batch/journal.js';
import { MAX_SHARDS, parseShard, shardOf, takeShard } from '../../src/batch/shard.js';
import { canonicalJson, readTaskList, type BatchEntry, type TaskList } from '../../src/batch/task-list.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-shard-unit-'));
let files = 0;
const listFile = (lines: string[]) => {
  const file = path.join(dir, `tasks-${(files += 1)}.jsonl`);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
};

/** A small seeded PRNG (mulberry32): the "random" lists are the same on every run, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: T[], next: () => number): T[] {
  const copy = [...items];
  for (let index = copy.length - 1; index > 0; index -= 1) {
    const other = Math.floor(next() * (index + 1));
    [copy[index], copy[other]] = [copy[other] as T, copy[index] as T];
  }
  return copy;
}

/** A task list's lines: some tasks with an id, some without (those are told apart by their repo). */
function generatedLines(size: number, next: () => number, prefix = 't'): string[] {
  return Array.from({ length: size }, (_, index) =>
    next() < 0.6 ? JSON.stringify({ id: `${prefix}-${index}-${Math.floor(next() * 1e6)}`, repo: '.' }) : JSON.stringify({ repo: `../${prefix}-repo-${index}`, task: `task ${index}` }),
  );
}

/** What a task is, whatever line it is on: its id, or (for a task without one) its repo. */
const identity = (entry: BatchEntry) => entry.spec.id ?? entry.spec.repo;

function shardsOf(list: TaskList, count: number): Map<string, number> {
  const found = new Map<string, number>();
  for (let index = 0; index < count; index += 1) {
    for (const entry of takeShard(list, { index, count }).entries) {
      expect(found.has(identity(entry)), `${identity(entry)} in shard ${found.get(identity(entry))} and ${index}`).toBe(false);
      found.set(identity(entry), index);
    }
  }
  return found;
}

describe('--shard i/n', () => {
  it.each([
    ['0/1', 0, 1],
    ['3/4', 3, 4],
    [' 2/8 ', 2, 8],
    ['07/08', 7, 8],
    [`0/${MAX_SHARDS}`, 0, MAX_SHARDS],
  ])('reads %j as shard %i of %i', (text, index, count) => {
    expect(parseShard(text, '--shard')).toEqual({ index, count });
  });

  it.each([
    ['3/3', '--shard "3/3": the shard index 3 is not below the count 3 (the shards of 3 are 0 to 2)'],
    ['-1/2', '--shard "-1/2": the shard index -1 is below 0'],
    ['0/0', '--shard "0/0": the shard count 0 must be at least 1'],
    ['0/-2', '--shard "0/-2": the shard count -2 must be at least 1'],
    ['a/b', '--shard "a/b" is not of the form i/n (shard i of n)'],
    ['1', '--shard "1" is not of the form i/n (shard i of n)'],
    ['', '--shard "" is not of the form i/n (shard i of n)'],
    ['1/2/3', '--shard "1/2/3" is not of the form i/n (shard i of n)'],
    ['1.5/4', '--shard "1.5/4" is not of the form i/n (shard i of n)'],
    ['auto/4', '--shard "auto/4" is not of the form i/n (shard i of n)'],
    [`0/${MAX_SHARDS + 1}`, `--shard "0/${MAX_SHARDS + 1}": the shard count ${MAX_SHARDS + 1} is more than ${MAX_SHARDS}`],
  ])('refuses %j as bad input that says what is wrong and the form', (text, message) => {
    const error = (() => {
      try {
        parseShard(text, '--shard');
      } catch (caught) {
        return caught;
      }
      throw new Error('expected parseShard to throw');
    })();
    expect(error).toBeInstanceOf(AspError);
    expect(error).toMatchObject({ code: 'BAD_INPUT', message });
    expect((error as AspError).hint).toMatch(/^pass --shard i\/n with 0 <= i < n \(shards are numbered from 0, as JOB_COMPLETION_INDEX is\)/);
    expect(`${(error as AspError).message} — ${(error as AspError).hint}`).not.toContain('\n');
  });

  it('names where the value came from', () => {
    expect(() => parseShard('4/4', 'ASP_SHARD')).toThrow(/^ASP_SHARD "4\/4": /);
  });
});

describe('the shards of a task list', () => {
  it('are disjoint and together the whole list, for many lists and shard counts', async () => {
    const next = random(1);
    for (let round = 0; round < 40; round += 1) {
      const list = await readTaskList(listFile(generatedLines(1 + Math.floor(next() * 60), next)));
      for (const count of [1, 2, 3, 5, 8, 13, 100]) {
        const found = shardsOf(list, count);
        expect([...found.keys()].sort()).toEqual(list.entries.map(identity).sort());
        expect(found.size).toBe(list.entries.length);
      }
    }
  });

  it('keep each task in its shard when lines are reordered, added or removed, and when the list is read again (--resume)', async () => {
    const next = random(2);
    for (let round = 0; round < 30; round += 1) {
      const lines = generatedLines(5 + Math.floor(next() * 40), next);
      const count = 2 + Math.floor(next() * 10);
      const before = shardsOf(await readTaskList(listFile(lines)), count);
      expect(shardsOf(await readTaskList(listFile(lines)), count)).toEqual(before);

      const kept = lines.filter(() => next() < 0.7);
      const edited = shuffle([...kept, ...generatedLines(Math.floor(next() * 20), next, `new${round}`), '# a comment', ''], next);
      const after = shardsOf(await readTaskList(listFile(edited)), count);
      for (const [task, shard] of after) {
        if (before.has(task)) expect(shard, task).toBe(before.get(task));
      }
      expect([...before.keys()].filter((task) => !after.has(task))).toHaveLength(lines.length - kept.length);
    }
  });

  it('hash a task without an id by what its line says, not where it is: fields in another order and spacing change nothing', async () => {
    const list = await readTaskList(
      listFile(['{"repo": "../a", "task": "fix it", "limits": {"memory": "1g", "cpus": 1}}', '{"id": "b", "repo": "../a"}', '{ "limits":{"cpus":1,"memory":"1g"},"task":"fix it","repo":"../a" }']),
    );
    const [first, withId, third] = list.entries;
    expect(first?.key).toBe('line-1');
    expect(third?.key).toBe('line-3');
    expect(first?.shardKey).toBe('content:{"limits":{"cpus":1,"memory":"1g"},"repo":"../a","task":"fix it"}');
    expect(third?.shardKey).toBe(first?.shardKey);
    expect(withId?.shardKey).toBe('id:b');
    expect(canonicalJson({ b: [2, { d: null, c: 'x' }], a: true })).toBe('{"a":true,"b":[2,{"c":"x","d":null}]}');
  });

  it('are balanced: 1000 tasks over 8 shards put 125 ± 30 in each', async () => {
    const list = await readTaskList(listFile(Array.from({ length: 1000 }, (_, index) => JSON.stringify({ id: `task-${index + 1}`, repo: '.' }))));
    const sizes = Array.from({ length: 8 }, (_, index) => takeShard(list, { index, count: 8 }).entries.length);
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(1000);
    for (const size of sizes) {
      expect(size).toBeGreaterThanOrEqual(95);
      expect(size).toBeLessThanOrEqual(155);
    }
  });

  it('are balanced for lists of any ids: no shard of 8 is off by more than 5 standard deviations, over 200 lists', async () => {
    const next = random(3);
    let worst = 0;
    for (let round = 0; round < 200; round += 1) {
      const size = 200 + Math.floor(next() * 800);
      const counts = new Array<number>(8).fill(0);
      for (let index = 0; index < size; index += 1) {
        const key = next() < 0.5 ? `id:${Math.floor(next() * 1e9).toString(36)}-${index}` : `content:${canonicalJson({ repo: `r${index}`, task: next().toString() })}`;
        const shard = shardOf(key, 8);
        counts[shard] = (counts[shard] ?? 0) + 1;
      }
      const sigma = Math.sqrt(size * (1 / 8) * (7 / 8));
      worst = Math.max(worst, ...counts.map((value) => Math.abs(value - size / 8) / sigma));
    }
    expect(worst).toBeLessThan(5);
  });

  it('leave a shard empty when there are more shards than tasks', async () => {
    const list = await readTaskList(listFile(['{"id": "a", "repo": "."}', '{"id": "b", "repo": "."}']));
    const sizes = Array.from({ length: 16 }, (_, index) => takeShard(list, { index, count: 16 }).entries.length);
    expect(sizes.filter((size) => size === 0).length).toBeGreaterThanOrEqual(14);
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(2);
  });

  it('count the invalid lines in shard 0 only, so a merged report counts each once', async () => {
    const list = await readTaskList(listFile(['{"id": "a", "repo": "."}', '{not json', '{"repo": 5}']));
    expect(list.invalid).toHaveLength(2);
    expect(takeShard(list, { index: 0, count: 3 }).invalid).toHaveLength(2);
    expect(takeShard(list, { index: 1, count: 3 }).invalid).toEqual([]);
    expect(takeShard(list, { index: 2, count: 3 }).invalid).toEqual([]);
  });
});

describe('the batch id of a shard', () => {
  it('is its own, so shards side by side under one ASP_HOME keep one journal each', () => {
    const whole = batchIdFor('/x/tasks.jsonl', 'a');
    const zero = batchIdFor('/x/tasks.jsonl', 'a', { index: 0, count: 2 });
    const one = batchIdFor('/x/tasks.jsonl', 'a', { index: 1, count: 2 });
    expect(zero).toBe(`${whole}-shard-0-of-2`);
    expect(one).toBe(`${whole}-shard-1-of-2`);
    expect(batchIdFor('/x/tasks.jsonl', 'a', { index: 0, count: 2 })).toBe(zero);
    expect(unshardedBatchId(one)).toBe(whole);
    expect(unshardedBatchId(whole)).toBe(whole);

    const home = path.join(dir, 'home');
    const at = '2026-01-01T00:00:00.000Z';
    new BatchJournal(home, zero).append({ event: 'end', key: 'a', at, attempt: 1, status: 'passed', exitCode: 0 });
    new BatchJournal(home, one).append({ event: 'end', key: 'b', at, attempt: 1, status: 'failed', exitCode: 1 });
    expect([...new BatchJournal(home, zero).finished().done.keys()]).toEqual(['a']);
    expect([...new BatchJournal(home, one).finished().done.keys()]).toEqual(['b']);
  });
});
