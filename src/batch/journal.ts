import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** What the journal records of one task attempt. */
export interface JournalRecord {
  event: 'start' | 'end';
  key: string;
  at: string;
  attempt: number;
  taskId?: string;
  status?: string;
  exitCode?: number;
  durationMs?: number;
  costUsd?: number;
  traceId?: string;
  artifactsDir?: string;
  failedStep?: string;
  failure?: string;
  outputTail?: string;
  error?: string;
}

/** The statuses that end a task for good: --resume does not run it again. */
const FINAL = new Set(['passed', 'awaiting_approval', 'failed', 'timeout']);

/**
 * The batch journal: `<home>/batches/<batch-id>/journal.jsonl`, appended synchronously one line per event,
 * so a batch killed at any moment can be resumed from what it says.
 */
export class BatchJournal {
  readonly dir: string;
  readonly file: string;

  constructor(home: string, readonly batchId: string) {
    this.dir = path.join(home, 'batches', batchId);
    this.file = path.join(this.dir, 'journal.jsonl');
    mkdirSync(this.dir, { recursive: true });
  }

  append(record: JournalRecord): void {
    appendFileSync(this.file, JSON.stringify(record) + '\n');
  }

  /** The last end record of every task that ended for good; a torn last line (a kill mid-write) is ignored. */
  finished(): Map<string, JournalRecord> {
    const done = new Map<string, JournalRecord>();
    let text = '';
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return done;
    }
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const record = JSON.parse(line) as JournalRecord;
        if (record.event === 'end' && record.status && FINAL.has(record.status)) done.set(record.key, record);
      } catch {
        /* torn line */
      }
    }
    return done;
  }
}

/** A batch is known by its file's path and content: the same list resumes, an edited list is a new batch. */
export function batchIdFor(file: string, content: string): string {
  const hash = createHash('sha256').update(path.resolve(file)).update('\0').update(content).digest('hex').slice(0, 12);
  return `${path.basename(file).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40)}-${hash}`;
}
