/**
 * Watches an `asp batch` from outside while it runs, the way an operator would: the supervisor's resident memory
 * (VmRSS in /proc/<pid>/status), open file descriptors (/proc/<pid>/fd) and CPU (/proc/<pid>/stat), the batch journal (each task's end, so
 * throughput can be counted per hundred), and the bytes of the journal and of the trace store against the tasks
 * finished so far. Used by bench/soak and test/soak. Linux only.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseJournalLine } from '../src/batch/journal.js';
import { statusBytes } from './peak-rss.js';

export interface ProcessSample {
  /** performance.now() when it was taken. */
  at: number;
  rssBytes: number;
  fds: number;
  /** CPU the supervisor and its waited-for children (git) have used, in clock ticks (1/100 s): utime + stime + cutime + cstime. */
  cpuTicks: number;
  /** End records in the journal when it was taken. */
  finished: number;
  journalBytes: number;
  traceStoreBytes: number;
}

/** One end record of the journal: its task, status and asp's own time of it (ms since the epoch). */
export interface TaskEnd {
  key: string;
  status: string;
  at: number;
}

/** CPU ticks of a live process and its waited-for children (/proc/<pid>/stat fields 14-17); undefined once it is gone. */
export function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')', where field 3 is.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [11, 12, 13, 14].reduce((sum, index) => sum + Number(fields[index] ?? 0), 0);
  } catch {
    return undefined;
  }
}

/** How many file descriptors a live process has open; undefined once it is gone. */
export function openDescriptors(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** Bytes of the regular files of a directory tree (0 when it does not exist yet); a file removed mid-walk counts 0. */
export function treeBytes(dir: string): number {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  let total = 0;
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += treeBytes(full);
    else if (entry.isFile()) {
      try {
        total += statSync(full).size;
      } catch {
        // Renamed or removed between the listing and the stat (a trace written aside, then renamed): not there.
      }
    }
  }
  return total;
}

/**
 * Follows `<home>/batches/<id>/journal.jsonl` of the one batch under `home`, reading only what was appended since
 * the last call, so a journal of thousands of lines costs nothing per sample. A line not yet whole waits.
 */
export class JournalFollower {
  readonly starts: Array<{ key: string; at: number }> = [];
  readonly ends: TaskEnd[] = [];
  /** Whole lines that are not journal records: a batch's journal has none. */
  damaged = 0;
  private file: string | undefined;
  private offset = 0;
  private pending = '';

  constructor(private readonly home: string) {}

  get path(): string | undefined {
    return this.file;
  }

  get bytes(): number {
    return this.offset;
  }

  poll(): void {
    this.file ??= this.find();
    if (!this.file) return;
    let fd;
    try {
      fd = openSync(this.file, 'r');
    } catch {
      return;
    }
    try {
      const chunk = Buffer.alloc(1 << 16);
      for (;;) {
        const read = readSync(fd, chunk, 0, chunk.length, this.offset);
        if (read === 0) break;
        this.offset += read;
        this.pending += chunk.subarray(0, read).toString('utf8');
      }
    } finally {
      closeSync(fd);
    }
    const lines = this.pending.split('\n');
    this.pending = lines.pop() ?? '';
    for (const line of lines) {
      const record = parseJournalLine(line);
      if (!record) this.damaged += 1;
      else if (record.event === 'start') this.starts.push({ key: record.key, at: Date.parse(record.at) });
      else this.ends.push({ key: record.key, status: record.status ?? 'unknown', at: Date.parse(record.at) });
    }
  }

  private find(): string | undefined {
    const batches = path.join(this.home, 'batches');
    let ids: string[];
    try {
      ids = readdirSync(batches);
    } catch {
      return undefined;
    }
    if (ids.length > 1) throw new Error(`more than one batch under ${batches}: ${ids.join(', ')}`);
    return ids[0] === undefined ? undefined : path.join(batches, ids[0], 'journal.jsonl');
  }
}

export interface SamplerOptions {
  pid: number;
  /** The batch's ASP_HOME: its journal and its trace store (`traces/`) are watched. */
  home: string;
  everyMs?: number;
}

/** The journal and the trace store once the batch has exited: every task it ran is in both. */
export type StoreSizes = Pick<ProcessSample, 'finished' | 'journalBytes' | 'traceStoreBytes'>;

/**
 * Samples a running supervisor every `everyMs` (default 250 ms) until `stop()`; no sample is taken once the
 * process is gone. `stop()` reads the journal and the store once more, for their final sizes.
 */
export class SoakSampler {
  readonly samples: ProcessSample[] = [];
  readonly journal: JournalFollower;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: SamplerOptions) {
    this.journal = new JournalFollower(options.home);
    this.timer = setInterval(() => this.sample(), options.everyMs ?? 250);
    this.sample();
  }

  stop(): StoreSizes {
    clearInterval(this.timer);
    this.journal.poll();
    return this.stores();
  }

  private sample(): void {
    const rssBytes = statusBytes(this.options.pid, 'VmRSS');
    const fds = openDescriptors(this.options.pid);
    const cpu = cpuTicks(this.options.pid);
    if (rssBytes === undefined || fds === undefined || cpu === undefined) return;
    this.journal.poll();
    this.samples.push({ at: performance.now(), rssBytes, fds, cpuTicks: cpu, ...this.stores() });
  }

  private stores(): StoreSizes {
    return { finished: this.journal.ends.length, journalBytes: this.journal.bytes, traceStoreBytes: treeBytes(path.join(this.options.home, 'traces')) };
  }
}
