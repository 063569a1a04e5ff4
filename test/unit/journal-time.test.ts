import { describe, expect, it } from 'vitest';
import { earlierWork } from '../../src/batch/journal-time.js';

const at = (seconds: number) => new Date(Date.UTC(2026, 11, 1, 12, 0, seconds)).toISOString();

describe('the time of the tasks --resume took from the journal', () => {
  it('counts tasks that ran side by side once, and the hours between two runs not at all', () => {
    const ended = new Map([
      // Two side by side, 0-10 s and 5-12 s; one a day later, 2 s.
      ['a', { at: at(10), durationMs: 10_000 }],
      ['b', { at: at(12), durationMs: 7_000 }],
      ['c', { at: new Date(Date.parse(at(2)) + 86_400_000).toISOString(), durationMs: 2_000 }],
      ['d', { at: at(59), durationMs: 1_000 }],
    ]);
    const tasks = [
      { key: 'a', resumed: true },
      { key: 'b', resumed: true },
      { key: 'c', resumed: true },
      // Run by this run: its time is this run's, not the journal's.
      { key: 'd', resumed: false },
    ];
    expect(earlierWork(tasks, ended)).toEqual({ tasks: 3, ms: 12_000 + 2_000, startedAt: new Date(at(0)) });
  });

  it('is nothing when no task came from the journal', () => {
    expect(earlierWork([{ key: 'a', resumed: false }], new Map([['a', { at: at(10), durationMs: 10_000 }]]))).toEqual({ tasks: 0, ms: 0, startedAt: undefined });
  });
});
