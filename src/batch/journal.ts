import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync, statSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { parseJsonWith, TASK_ID_PATTERN } from '../config/task-spec.js';
import type { Shard } from './shard.js';

const line = (max: number) => z.string().max(max);
const count = z.number().int().min(0).max(1_000_000);

/** A task's test results as the journal and the JSON report carry them (test-results.ts TestSummary), read back checked. */
export const testSummarySchema = z.strictObject({
  total: count,
  passed: count,
  failed: count,
  errors: count,
  skipped: count,
  files: z.array(line(4096)).max(64),
  failing: z.array(z.strictObject({ name: line(1024), classname: line(1024), message: line(1024).nullable() })).max(50),
});

/**
 * One journal line as read back for --resume: a resumed task's outcome comes from it (and goes into the report),
 * so every field is checked; a line that fails is damaged and the task simply runs again.
 */
const journalRecordSchema = z.strictObject({
  event: z.enum(['start', 'end']),
  key: line(200).min(1),
  at: z.string().refine((text) => !Number.isNaN(Date.parse(text)), 'must be an ISO time'),
  attempt: z.number().int().min(1).max(1000),
  taskId: z.string().regex(TASK_ID_PATTERN).optional(),
  status: z.enum(['passed', 'awaiting_approval', 'rejected', 'failed', 'timeout', 'interrupted', 'error', 'not-run']).optional(),
  exitCode: z.number().int().min(0).max(255).optional(),
  durationMs: z.number().min(0).optional(),
  costUsd: z.number().min(0).optional(),
  traceId: z
    .string()
    .regex(/^[0-9a-f]{32}$/)
    .optional(),
  artifactsDir: line(4096).optional(),
  failedStep: line(200).optional(),
  failure: line(100_000).optional(),
  outputTail: line(100_000).optional(),
  error: line(100_000).optional(),
  /** The repository's test results (counts, failing tests), so a resumed task's report still lists them. */
  tests: testSummarySchema.optional(),
});

/** What the journal records of one task attempt. */
export type JournalRecord = z.infer<typeof journalRecordSchema>;
export type FinalStatus = 'passed' | 'awaiting_approval' | 'rejected' | 'failed' | 'timeout';
export type FinishedRecord = JournalRecord & { status: FinalStatus };

/** The statuses that end a task for good: --resume does not run it again. */
const FINAL: ReadonlySet<string> = new Set<FinalStatus>(['passed', 'awaiting_approval', 'rejected', 'failed', 'timeout']);

/** Parses one journal line; undefined when it is torn (a kill mid-write) or not a record. */
export function parseJournalLine(text: string): JournalRecord | undefined {
  const checked = parseJsonWith(text, journalRecordSchema);
  return 'value' in checked ? checked.value : undefined;
}

/**
 * The batch journal: `<home>/batches/<batch-id>/journal.jsonl`, appended synchronously one line per event,
 * so a batch killed at any moment can be resumed from what it says.
 */
export class BatchJournal {
  readonly dir: string;
  readonly file: string;
  /** The journal's length after its last whole line: where a torn append is cut back to. */
  private length: number | undefined;

  constructor(
    home: string,
    readonly batchId: string,
  ) {
    this.dir = path.join(home, 'batches', batchId);
    this.file = path.join(this.dir, 'journal.jsonl');
    mkdirSync(this.dir, { recursive: true });
  }

  /**
   * Appends one line. An append that fails (a full disk: ENOSPC after part of the line went down) is cut back to
   * the last whole line before it throws, so the next line the batch writes once there is room does not glue onto a
   * torn one: the journal stays readable for --resume whatever the disk did.
   */
  append(record: JournalRecord): void {
    const text = JSON.stringify(record) + '\n';
    this.length ??= sizeOf(this.file);
    try {
      appendFileSync(this.file, text);
      this.length += Buffer.byteLength(text);
    } catch (error) {
      try {
        if (sizeOf(this.file) > this.length) truncateSync(this.file, this.length);
      } catch {
        // The reader ignores a torn last line; this only keeps the next one whole.
      }
      throw error;
    }
  }

  /**
   * The last end record of every task that ended for good. A torn last line (a kill mid-write) is ignored; other
   * lines that are not records are counted in `damaged`, and a task whose end record is damaged runs again.
   */
  finished(): { done: Map<string, FinishedRecord>; damaged: number } {
    const done = new Map<string, FinishedRecord>();
    let text = '';
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return { done, damaged: 0 };
    }
    const lines = text.split('\n');
    let damaged = 0;
    lines.forEach((entry, index) => {
      if (!entry.trim()) return;
      const record = parseJournalLine(entry);
      if (!record) damaged += index === lines.length - 1 ? 0 : 1;
      else if (record.event === 'end' && record.status && isFinal(record.status)) done.set(record.key, { ...record, status: record.status });
    });
    return { done, damaged };
  }
}

/**
 * A batch is known by its file's path and content: the same list resumes, an edited list is a new batch. A shard is
 * a batch of its own (`<name>-<hash>-shard-2-of-8`): shards of one list started side by side under one ASP_HOME
 * keep one journal each, and `--resume --shard 2/8` continues shard 2 only.
 */
export function batchIdFor(file: string, content: string, shard?: Shard): string {
  const hash = createHash('sha256').update(path.resolve(file)).update('\0').update(content).digest('hex').slice(0, 12);
  const name = path
    .basename(file)
    .replace(/\.[^.]*$/, '')
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 40);
  return `${name}-${hash}${shard ? shardSuffix(shard) : ''}`;
}

function shardSuffix(shard: Shard): string {
  return `-shard-${shard.index}-of-${shard.count}`;
}

/** The batch id of the whole list a shard's batch id belongs to. */
export function unshardedBatchId(batchId: string): string {
  return batchId.replace(/-shard-\d+-of-\d+$/, '');
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function isFinal(status: string): status is FinalStatus {
  return FINAL.has(status);
}
