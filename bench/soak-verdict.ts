/**
 * The leak verdict of a soak: pure functions over what bench/soak-sampler.ts saw, so the same judgement runs in
 * bench/soak, in test/soak and, on made-up leaky figures, in test/unit/soak-verdict.test.ts.
 *
 * Everything is judged against tasks finished rather than time, after a warm-up (the first 20% of the tasks: the
 * sweep, the image check, V8's heap and the first clones settle there). Memory is compared as medians of windows
 * of samples, never single samples: a Node process's RSS saws up and down by tens of MiB with its garbage
 * collector, and a median over a quarter of the run holds still where a peak does not.
 */
import type { ProcessSample, StoreSizes, TaskEnd } from './soak-sampler.js';

export interface LeakBounds {
  /** Fraction of the tasks whose samples are not judged (default 0.2). */
  warmupFraction: number;
  /**
   * How much the median RSS of the last quarter after warm-up may exceed that of the first quarter (default 32 MiB:
   * about a quarter of what the supervisor holds at steady state, and what 1,000 tasks leaking 40 KiB each add).
   */
  rssGrowthBytes: number;
  /** The same for open descriptors (default 8: fewer than one task's worth of sockets and pipes per slot). */
  fdGrowth: number;
  /** How far the bytes per task of the second half may be from those of the first, as a fraction (default 0.25). */
  growthTolerance: number;
}

export const DEFAULT_BOUNDS: LeakBounds = { warmupFraction: 0.2, rssGrowthBytes: 32 * 1024 * 1024, fdGrowth: 8, growthTolerance: 0.25 };

export interface SoakObservation {
  tasks: number;
  samples: ProcessSample[];
  /** The store sizes after the batch exited. */
  final: StoreSizes;
  /** asp-labelled containers and volumes of this batch still on the daemon after it exited. */
  leftovers: { containers: string[]; volumes: string[] };
  /** What the batch's own outputs (exit code, report, journal, trace store, workspaces) say is wrong; empty when nothing is. */
  problems: string[];
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface Verdict {
  ok: boolean;
  checks: Check[];
}

const MiB = 1024 * 1024;

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** The samples taken while `from` ≤ finished < `to` (the last window includes `to`). */
function window(samples: ProcessSample[], from: number, to: number, last: boolean): ProcessSample[] {
  return samples.filter((sample) => sample.finished >= from && (last ? sample.finished <= to : sample.finished < to));
}

/** Median of `pick` in the first and last quarter of the tasks after warm-up. */
function firstAndLastQuarter(observation: SoakObservation, bounds: LeakBounds, pick: (sample: ProcessSample) => number) {
  const warm = Math.floor(observation.tasks * bounds.warmupFraction);
  const quarter = (observation.tasks - warm) / 4;
  const first = window(observation.samples, warm, warm + quarter, false).map(pick);
  const last = window(observation.samples, observation.tasks - quarter, observation.tasks, true).map(pick);
  return { first: median(first), last: median(last), firstCount: first.length, lastCount: last.length };
}

/** Least-squares slope of bytes against tasks finished; NaN with fewer than two distinct task counts. */
function slope(points: Array<{ finished: number; bytes: number }>): number {
  const n = points.length;
  const meanX = points.reduce((sum, point) => sum + point.finished, 0) / n;
  const meanY = points.reduce((sum, point) => sum + point.bytes, 0) / n;
  let num = 0;
  let den = 0;
  for (const point of points) {
    num += (point.finished - meanX) * (point.bytes - meanY);
    den += (point.finished - meanX) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

/**
 * Bytes per task in the first and the second half of the tasks after warm-up, each the slope of a line through the
 * samples of that half (the final sizes are the last point): linear growth means the two are about equal.
 */
export function growthPerTask(observation: SoakObservation, bounds: LeakBounds, store: 'journalBytes' | 'traceStoreBytes'): { first: number; second: number } {
  const warm = Math.floor(observation.tasks * bounds.warmupFraction);
  const middle = (warm + observation.tasks) / 2;
  const points = [...observation.samples, { ...observation.final }].map((sample) => ({ finished: sample.finished, bytes: sample[store] }));
  return {
    first: slope(points.filter((point) => point.finished >= warm && point.finished <= middle)),
    second: slope(points.filter((point) => point.finished >= middle)),
  };
}

export function leakVerdict(observation: SoakObservation, bounds: LeakBounds = DEFAULT_BOUNDS): Verdict {
  const checks: Check[] = [];
  const rss = firstAndLastQuarter(observation, bounds, (sample) => sample.rssBytes);
  const rssGrowth = rss.last - rss.first;
  checks.push({
    name: 'supervisor RSS flat after warm-up',
    ok: rss.firstCount > 0 && rss.lastCount > 0 && rssGrowth <= bounds.rssGrowthBytes,
    detail: `median ${(rss.first / MiB).toFixed(1)} MiB (${rss.firstCount} samples) → ${(rss.last / MiB).toFixed(1)} MiB (${rss.lastCount}), ${sign(rssGrowth / MiB, 1)} MiB; bound +${(bounds.rssGrowthBytes / MiB).toFixed(0)} MiB`,
  });
  const fds = firstAndLastQuarter(observation, bounds, (sample) => sample.fds);
  const fdGrowth = fds.last - fds.first;
  checks.push({
    name: 'open descriptors flat after warm-up',
    ok: fds.firstCount > 0 && fds.lastCount > 0 && fdGrowth <= bounds.fdGrowth,
    detail: `median ${fds.first} → ${fds.last}, ${sign(fdGrowth, 1)}; bound +${bounds.fdGrowth}`,
  });
  for (const [store, name] of [
    ['journalBytes', 'journal'],
    ['traceStoreBytes', 'trace store'],
  ] as const) {
    const { first, second } = growthPerTask(observation, bounds, store);
    const ratio = second / first;
    checks.push({
      name: `${name} grows linearly`,
      ok: first > 0 && Math.abs(ratio - 1) <= bounds.growthTolerance,
      detail: `${first.toFixed(0)} B/task in the first half, ${second.toFixed(0)} B/task in the second (ratio ${ratio.toFixed(2)}; bound 1 ± ${bounds.growthTolerance})`,
    });
  }
  const { containers, volumes } = observation.leftovers;
  checks.push({
    name: 'no asp object left',
    ok: containers.length === 0 && volumes.length === 0,
    detail: containers.length + volumes.length === 0 ? 'no container, no volume of the batch' : `containers: ${containers.join(', ') || '-'}; volumes: ${volumes.join(', ') || '-'}`,
  });
  checks.push({
    name: "the batch's outputs are whole",
    ok: observation.problems.length === 0,
    detail: observation.problems.length === 0 ? 'exit 0; report, journal, trace store and workspaces hold every task once, passed' : observation.problems.slice(0, 10).join('; '),
  });
  return { ok: checks.every((check) => check.ok), checks };
}

const sign = (value: number, digits: number) => `${value >= 0 ? '+' : ''}${value.toFixed(digits)}`;

export interface ThroughputWindow {
  /** Tasks in the window (the last one may be short). */
  tasks: number;
  /** First and last task of the window, counted from 1 in the order they ended. */
  from: number;
  to: number;
  tasksPerSecond: number;
  /**
   * CPU of the supervisor and its children per task over the window, ms: unlike tasks/s it hardly moves with what
   * else the machine runs, so per-task work that grows with the tasks already run shows here first.
   */
  cpuMsPerTask: number;
  samples: ProcessSample[];
}

/**
 * Tasks per second of each `size` tasks in the order they ended: window i runs from the end of the task before it
 * (for the first, from `startedAt`, the journal's first start) to the end of its last task.
 */
export function throughputWindows(startedAt: number, ends: TaskEnd[], samples: ProcessSample[], size = 100): ThroughputWindow[] {
  const times = ends.map((end) => end.at).sort((a, b) => a - b);
  const windows: ThroughputWindow[] = [];
  for (let from = 0; from < times.length; from += size) {
    const to = Math.min(from + size, times.length);
    const begin = from === 0 ? startedAt : (times[from - 1] ?? startedAt);
    const seconds = ((times[to - 1] ?? begin) - begin) / 1000;
    windows.push({
      tasks: to - from,
      from: from + 1,
      to,
      tasksPerSecond: (to - from) / seconds,
      cpuMsPerTask: cpuPerTask(samples, from, to),
      samples: samples.filter((sample) => sample.finished >= from && sample.finished < to),
    });
  }
  return windows;
}

/** CPU ms per task between the first samples at which `from` and `to` tasks had finished (the last sample for `to` when none). */
export function cpuPerTask(samples: ProcessSample[], from: number, to: number): number {
  const start = samples.find((sample) => sample.finished >= from);
  const end = samples.find((sample) => sample.finished >= to) ?? samples.at(-1);
  if (!start || !end || end.finished <= start.finished) return Number.NaN;
  // USER_HZ is 100 on every Linux this runs on.
  return ((end.cpuTicks - start.cpuTicks) * 10) / (end.finished - start.finished);
}

/** Throughput of the last `size` tasks over that of the first `size` (size at most half the tasks). */
export function lastOverFirst(startedAt: number, ends: TaskEnd[], size = 100): { size: number; first: number; last: number; ratio: number } {
  const times = ends.map((end) => end.at).sort((a, b) => a - b);
  const n = Math.min(size, Math.floor(times.length / 2));
  const first = n / (((times[n - 1] ?? startedAt) - startedAt) / 1000);
  const last = n / (((times[times.length - 1] ?? 0) - (times[times.length - n - 1] ?? 0)) / 1000);
  return { size: n, first, last, ratio: last / first };
}
