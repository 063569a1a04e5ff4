/**
 * Time comes from here, so deadlines and expiry are testable. It has two faces because they answer two questions:
 * `now()` is the wall clock, for timestamps and expiry, which NTP, a resumed VM or a user may set forward or back
 * at any moment; `monotonicMs()` only ever moves forward, at the pace of real time, and means nothing outside this
 * process. Every deadline and every duration is measured on the second, never by subtracting two wall times.
 */
export interface Clock {
  now(): Date;
  monotonicMs(): number;
}

/** The wall-clock face alone, for what asks only what time it is: expiry, and ages of records other processes wrote. */
export type WallClock = Pick<Clock, 'now'>;

export const systemClock: Clock = { now: () => new Date(), monotonicMs: () => performance.now() };

/**
 * A clock that reads the wall clock once, when it is made, and from then on moves with the monotonic clock. One
 * task runs on one: its timestamps (events, steps, spans) then agree with its durations, so a wall clock set back
 * mid-step cannot make a step end before it started, nor set forward make it last hours (OpenTelemetry's
 * AnchoredClock does the same for a trace). It drifts from the wall clock by no more than the wall clock was set by
 * during the task; the next task reads it afresh.
 */
export function anchoredClock(clock: Clock): Clock {
  const wallMs = clock.now().getTime();
  const startMs = clock.monotonicMs();
  return { now: () => new Date(wallMs + (clock.monotonicMs() - startMs)), monotonicMs: () => clock.monotonicMs() };
}

/** A point to stop at, on the monotonic clock: setting the wall clock neither brings it nearer nor puts it off. */
export interface Deadline {
  /** Milliseconds left: 0 or less once it passed. */
  remainingMs(): number;
}

/** The deadline `ms` after `fromMs` (a reading of `clock.monotonicMs()`, by default now). */
export function deadlineAfter(clock: Clock, ms: number, fromMs = clock.monotonicMs()): Deadline {
  const atMs = fromMs + ms;
  return { remainingMs: () => atMs - clock.monotonicMs() };
}
