import { describe, expect, it } from 'vitest';
import { anchoredClock, deadlineAfter, systemClock, type Clock } from '../../src/core/clock.js';
import { EXPIRY_GRACE_MS, expiryOf } from '../../src/backend/ownership-labels.js';

/** A clock whose two faces move apart on request: `pass` is time passing, `setWall` the wall clock being set. */
function steppedClock(wallMs: number): Clock & { pass(ms: number): void; setWall(ms: number): void } {
  let wall = wallMs;
  let monotonic = 1000;
  return {
    now: () => new Date(wall),
    monotonicMs: () => monotonic,
    pass: (ms) => ((wall += ms), (monotonic += ms)),
    setWall: (ms) => (wall += ms),
  };
}

const HOURS_3 = 3 * 3_600_000;

describe('the clock', () => {
  it("the system clock's monotonic face never goes back", () => {
    const first = systemClock.monotonicMs();
    expect(systemClock.monotonicMs()).toBeGreaterThanOrEqual(first);
  });

  describe('an anchored clock (one per task)', () => {
    it('starts at the wall time and moves with the monotonic clock, whatever the wall clock is set to', () => {
      const base = steppedClock(Date.parse('2026-03-01T12:00:00Z'));
      const task = anchoredClock(base);
      const start = task.now().getTime();
      expect(start).toBe(Date.parse('2026-03-01T12:00:00Z'));

      base.pass(2000);
      base.setWall(HOURS_3);
      expect(task.now().getTime() - start).toBe(2000);
      base.setWall(-2 * HOURS_3);
      base.pass(500);
      expect(task.now().getTime() - start).toBe(2500);
    });

    it('never gives a time before one it gave already', () => {
      const base = steppedClock(Date.parse('2026-03-01T12:00:00Z'));
      const task = anchoredClock(base);
      const before = task.now().getTime();
      base.setWall(-HOURS_3);
      expect(task.now().getTime()).toBeGreaterThanOrEqual(before);
    });

    it('reads the wall clock afresh when the next one is made (the next task sees a corrected clock)', () => {
      const base = steppedClock(Date.parse('2026-03-01T12:00:00Z'));
      base.setWall(HOURS_3);
      expect(anchoredClock(base).now().toISOString()).toBe('2026-03-01T15:00:00.000Z');
    });
  });

  describe('a deadline', () => {
    it('passes after its time has passed, neither earlier when the wall clock is set forward nor later when set back', () => {
      const base = steppedClock(0);
      const forward = deadlineAfter(base, 60_000);
      const back = deadlineAfter(base, 60_000);
      base.setWall(HOURS_3);
      expect(forward.remainingMs()).toBe(60_000);
      base.setWall(-2 * HOURS_3);
      base.pass(59_999);
      expect(back.remainingMs()).toBe(1);
      base.pass(1);
      expect(back.remainingMs()).toBe(0);
    });

    it('counts from the reading it is given (the start of the task), not from when it is made', () => {
      const base = steppedClock(0);
      const started = base.monotonicMs();
      base.pass(10_000);
      expect(deadlineAfter(base, 30_000, started).remainingMs()).toBe(20_000);
    });
  });

  describe('the expiry of a task', () => {
    it('is its deadline plus the grace after its start, and nothing else', () => {
      const start = new Date('2026-03-01T12:00:00Z');
      expect(expiryOf(start, 30 * 60_000).toISOString()).toBe('2026-03-01T12:40:00.000Z');
      expect(EXPIRY_GRACE_MS).toBe(10 * 60_000);
    });
  });
});
