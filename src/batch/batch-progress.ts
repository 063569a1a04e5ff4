import { formatDuration } from '../config/units.js';
import { printableLine } from '../core/printable.js';
import type { TaskOutcome } from './batch-report.js';

export interface BatchProgress {
  started(key: string): void;
  finished(outcome: TaskOutcome): void;
  close(): void;
}

interface Counts {
  total: number;
  done: number;
  running: number;
  failed: number;
  /** Of `done`, the tasks --resume took from the journal: finished before, not work of this run. */
  fromJournal: number;
}

/**
 * On a terminal: one live line (done/running/failed, rate, ETA), rewritten in place.
 * In CI or without a TTY: one plain line per finished task, which logs keep readable.
 */
export function batchProgress(total: number, options: { tty: boolean; write: (text: string) => void; now?: () => number }): BatchProgress {
  // Only differences of it are used: the monotonic clock, which no setting of the wall clock moves.
  const now = options.now ?? (() => performance.now());
  const started = now();
  const counts: Counts = { total, done: 0, running: 0, failed: 0, fromJournal: 0 };
  // Rate and ETA count this run's own work: a task taken from the journal took no time here.
  const ranHere = () => counts.done - counts.fromJournal;
  const rate = () => {
    const minutes = (now() - started) / 60_000;
    return minutes > 0 ? ranHere() / minutes : 0;
  };
  const eta = () => {
    const perTask = ranHere() ? (now() - started) / ranHere() : 0;
    return perTask ? formatDuration(perTask * (counts.total - counts.done)) : '?';
  };
  const line = () =>
    `asp batch: ${counts.done}/${counts.total} done${counts.fromJournal ? ` (${counts.fromJournal} from journal)` : ''}, ${counts.running} running, ${counts.failed} failed, ${rate().toFixed(1)}/min, ETA ${eta()}`;

  const running = new Set<string>();
  const start = (key: string) => {
    running.add(key);
    counts.running = running.size;
  };
  /** Counts a finished task; one taken from the journal by --resume was never started here. */
  const count = (outcome: TaskOutcome) => {
    running.delete(outcome.key);
    counts.running = running.size;
    counts.done += 1;
    if (outcome.resumed) counts.fromJournal += 1;
    if (!succeeded(outcome)) counts.failed += 1;
  };

  if (options.tty) {
    let timer: NodeJS.Timeout | undefined = setInterval(() => options.write(`\r\u001b[2K${line()}`), 500);
    timer.unref();
    return {
      started: start,
      finished: (outcome) => {
        count(outcome);
        if (!succeeded(outcome)) options.write(`\r\u001b[2K${describe(outcome, counts)}\n`);
        options.write(`\r\u001b[2K${line()}`);
      },
      close: () => {
        if (timer) clearInterval(timer);
        timer = undefined;
        options.write(`\r\u001b[2K${line()}\n`);
      },
    };
  }
  return {
    started: start,
    finished: (outcome) => {
      count(outcome);
      options.write(`${describe(outcome, counts)}\n`);
    },
    close: () => options.write(`${line()}\n`),
  };
}

function describe(outcome: TaskOutcome, counts: Counts): string {
  const timing = outcome.durationMs !== null ? ` in ${formatDuration(outcome.durationMs)}` : '';
  // The failure can quote a task's own output or file names: escaped, it cannot drive the terminal.
  const why = succeeded(outcome) || !outcome.failure ? '' : ` (${printableLine(outcome.failure)})`;
  const resumed = outcome.resumed ? ' [from journal]' : '';
  return `asp batch: [${counts.done}/${counts.total}] ${outcome.key} ${outcome.status}${timing}${why}${resumed}`;
}

function succeeded(outcome: TaskOutcome): boolean {
  return outcome.status === 'passed' || outcome.status === 'awaiting_approval' || outcome.status === 'rejected';
}
