import { describe, expect, it } from 'vitest';
import type { ProcessSample, TaskEnd } from '../../bench/soak-sampler.js';
import { cpuPerTask, lastOverFirst, leakVerdict, throughputWindows, type SoakObservation } from '../../bench/soak-verdict.js';

const MiB = 1024 * 1024;

interface Shape {
  tasks?: number;
  rss?: (finished: number, index: number) => number;
  fds?: (finished: number, index: number) => number;
  journal?: (finished: number) => number;
  traces?: (finished: number) => number;
}

/** A made-up soak: three samples per task finished, as a 400 ms sampler takes of a batch doing about 1 task/s. */
function observation(shape: Shape = {}, extra: Partial<SoakObservation> = {}): SoakObservation {
  const tasks = shape.tasks ?? 1000;
  // A garbage collector's sawtooth: ±24 MiB around 120 MiB, a period of 37 samples.
  const rss = shape.rss ?? ((_finished, index) => 120 * MiB + ((index % 37) - 18) * (24 / 18) * MiB);
  const fds = shape.fds ?? ((_finished, index) => 30 + (index % 5));
  const journal = shape.journal ?? ((finished) => 400 * finished + 4 * 110);
  const traces = shape.traces ?? ((finished) => 6400 * finished);
  const samples: ProcessSample[] = [];
  for (let index = 0; index < tasks * 3; index += 1) {
    const finished = Math.floor(index / 3);
    samples.push({ at: index * 400, rssBytes: rss(finished, index), fds: fds(finished, index), cpuTicks: index * 2, finished, journalBytes: journal(finished), traceStoreBytes: traces(finished) });
  }
  return {
    tasks,
    samples,
    final: { finished: tasks, journalBytes: journal(tasks), traceStoreBytes: traces(tasks) },
    leftovers: { containers: [], volumes: [] },
    problems: [],
    ...extra,
  };
}

const failing = (verdict: ReturnType<typeof leakVerdict>) => verdict.checks.filter((check) => !check.ok).map((check) => check.name);

describe('the soak leak verdict', () => {
  it('passes a flat run whose RSS saws ±24 MiB with the garbage collector', () => {
    const verdict = leakVerdict(observation());
    expect(failing(verdict)).toEqual([]);
    expect(verdict.ok).toBe(true);
  });

  it('passes memory that grows during the warm-up and then holds', () => {
    expect(failing(leakVerdict(observation({ rss: (finished) => (60 + Math.min(finished, 200) / 2) * MiB })))).toEqual([]);
  });

  it('fails a supervisor that keeps 100 KiB per task', () => {
    const verdict = leakVerdict(observation({ rss: (finished, index) => 120 * MiB + ((index % 37) - 18) * MiB + finished * 100 * 1024 }));
    expect(failing(verdict)).toEqual(['supervisor RSS flat after warm-up']);
    expect(verdict.ok).toBe(false);
  });

  it('fails one descriptor leaked every 50 tasks', () => {
    expect(failing(leakVerdict(observation({ fds: (finished) => 30 + Math.floor(finished / 50) })))).toEqual(['open descriptors flat after warm-up']);
  });

  it('fails a journal that grows faster than the tasks (each line a little longer than the last)', () => {
    expect(failing(leakVerdict(observation({ journal: (finished) => 400 * finished + 0.2 * finished * finished })))).toEqual(['journal grows linearly']);
  });

  it('fails a trace store that stops growing halfway', () => {
    expect(failing(leakVerdict(observation({ traces: (finished) => 6400 * Math.min(finished, 600) })))).toEqual(['trace store grows linearly']);
  });

  it('passes a trace store that runs up to four tasks ahead of the journal (traces written before their end is journaled)', () => {
    // Up to four tasks' traces written before their end is journaled, as at concurrency 4.
    const jitter = (finished: number) => 6400 * ((finished * 7919) % 5);
    expect(failing(leakVerdict(observation({ tasks: 200, traces: (finished) => 6400 * finished + jitter(finished) })))).toEqual([]);
  });

  it('fails a container or a volume left on the daemon, and a problem in the outputs', () => {
    const verdict = leakVerdict(observation({}, { leftovers: { containers: ['asp-soak-1'], volumes: ['asp-soak-1-ws'] }, problems: ['asp batch exited 1'] }));
    expect(failing(verdict)).toEqual(['no asp object left', "the batch's outputs are whole"]);
    expect(verdict.checks.find((check) => check.name === 'no asp object left')?.detail).toBe('containers: asp-soak-1; volumes: asp-soak-1-ws');
  });

  it('fails a run with no samples after warm-up (a supervisor that died early is not a flat one)', () => {
    const early = observation();
    const verdict = leakVerdict({ ...early, samples: early.samples.filter((sample) => sample.finished < 150) });
    expect(failing(verdict)).toContain('supervisor RSS flat after warm-up');
    expect(failing(verdict)).toContain('open descriptors flat after warm-up');
  });
});

describe('soak throughput', () => {
  // 1 task/s for the first 500 tasks, then 0.8 task/s.
  const startedAt = 1_000_000;
  const ends: TaskEnd[] = [];
  let at = startedAt;
  for (let index = 0; index < 1000; index += 1) {
    at += index < 500 ? 1000 : 1250;
    ends.push({ key: `t-${index}`, status: 'passed', at });
  }

  it('counts tasks per second for each hundred, in the order the tasks ended', () => {
    const windows = throughputWindows(startedAt, [...ends].reverse(), [], 100);
    expect(windows.map((window) => [window.from, window.to])).toEqual(Array.from({ length: 10 }, (_, index) => [index * 100 + 1, index * 100 + 100]));
    expect(windows.map((window) => Number(window.tasksPerSecond.toFixed(2)))).toEqual([1, 1, 1, 1, 1, 0.8, 0.8, 0.8, 0.8, 0.8]);
  });

  it("counts the supervisor's CPU per task between the samples where the window starts and ends", () => {
    // 20 ticks (200 ms) a task for the first 100 tasks, 30 ticks after: two samples a task.
    const samples: ProcessSample[] = Array.from({ length: 400 }, (_, index) => {
      const finished = Math.floor(index / 2);
      const ticks = finished <= 100 ? finished * 20 : 2000 + (finished - 100) * 30;
      return { at: index, rssBytes: 0, fds: 0, cpuTicks: ticks, finished, journalBytes: 0, traceStoreBytes: 0 };
    });
    expect(cpuPerTask(samples, 0, 100)).toBe(200);
    expect(cpuPerTask(samples, 100, 199)).toBe(300);
    expect(cpuPerTask(samples, 300, 400)).toBeNaN();
  });

  it('compares the last hundred with the first', () => {
    expect(lastOverFirst(startedAt, ends, 100)).toMatchObject({ size: 100, first: 1, last: 0.8, ratio: 0.8 });
    expect(lastOverFirst(startedAt, ends.slice(0, 150), 100).size).toBe(75);
  });
});
