import { z } from 'zod';
import { AspError } from '../core/asp-error.js';
import { readInputFile } from '../config/input-file.js';
import { parseJsonWith } from '../config/task-spec.js';
import type { BatchSummary, ShardSource, TaskOutcome } from './batch-report.js';
import { testSummarySchema } from './journal.js';
import { MAX_SHARDS } from './shard.js';

/** A report carries up to three 100 000-character texts per task; thousands of tasks fit, a stray log does not. */
const MAX_REPORT_BYTES = 256 * 1024 * 1024;

const count = z.number().int().min(0);
const text = z.string().max(100_000);

const taskOutcomeSchema = z.object({
  key: z.string().min(1).max(200),
  line: z.number().int().min(1),
  taskId: z.string().max(200).nullable(),
  status: z.enum(['passed', 'awaiting_approval', 'rejected', 'failed', 'timeout', 'error', 'interrupted', 'not-run']),
  exitCode: z.number().int().min(0).max(255).nullable(),
  durationMs: z.number().min(0).nullable(),
  costUsd: z.number().min(0).nullable(),
  traceId: z.string().max(200).nullable(),
  artifactsDir: z.string().max(4096).nullable(),
  attempts: count,
  failedStep: z.string().max(200).nullable(),
  failure: text.nullable(),
  outputTail: text.nullable(),
  error: text.nullable(),
  check: z
    .object({
      status: z.string().max(200),
      exitCode: z.number().int(),
      steps: z.array(z.object({ name: z.string().max(200), status: z.string().max(200), exitCode: z.number().int().nullable() })).max(1000),
    })
    .nullable()
    .optional(),
  egress: z.object({ connections: count, refused: count, bytesIn: count, bytesOut: count }).nullable().optional(),
  tests: testSummarySchema.nullable().optional(),
  resumed: z.boolean(),
}) satisfies z.ZodType<TaskOutcome>;

const shardSchema = z.object({ index: count, count: z.number().int().min(1).max(MAX_SHARDS) }).refine((shard) => shard.index < shard.count, { message: 'index must be below count', path: ['index'] });

const shardSourceSchema = z
  .object({
    index: count,
    count: z.number().int().min(1).max(MAX_SHARDS),
    report: z.string(),
    batchId: z.string().min(1),
    journal: z.string().nullable(),
    total: count,
    exitCode: z.number().int().min(0).max(255),
    durationMs: z.number().min(0),
  })
  .refine((shard) => shard.index < shard.count, { message: 'index must be below count', path: ['index'] }) satisfies z.ZodType<ShardSource>;

/**
 * An `asp batch --report` file (or a merged one), read back to be merged: checked whole, since a field of it goes
 * into the merged report and its exit code. Unknown fields are dropped, as a report of a newer asp may have some.
 */
export const batchReportSchema = z.object({
  batchId: z.string().min(1).max(300),
  file: z.string().max(4096),
  journal: z.string().max(4096).nullable(),
  concurrency: count,
  total: count,
  passed: count,
  failed: count,
  errors: count,
  interrupted: count,
  notRun: count,
  invalid: count,
  durationMs: z.number().min(0),
  exitCode: z.number().int().min(0).max(255),
  list: z.object({ digest: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 hex digits>'), tasks: count }),
  shard: shardSchema.nullable(),
  stopped: z.string().max(100_000).nullable().optional(),
  shards: z.array(shardSourceSchema).min(1).optional(),
  missingShards: z.array(count).optional(),
  tasks: z.array(taskOutcomeSchema),
}) satisfies z.ZodType<BatchSummary>;

/** What a report of an asp from before --shard still has: it can be told apart, and why it cannot be merged said. */
const earlierReportSchema = z.object({ batchId: z.string(), tasks: z.array(z.unknown()), list: z.undefined().optional() });

const HINT = 'name the JSON file an asp batch --report wrote';

/** Reads and checks one report; every way it can be wrong is one line of bad input that names the file. */
export async function readBatchReport(file: string): Promise<BatchSummary> {
  const content = await readInputFile(file, MAX_REPORT_BYTES, 'batch report', HINT);
  const checked = parseJsonWith(content, batchReportSchema);
  if ('notJson' in checked) throw new AspError('BAD_INPUT', `batch report ${file} is not JSON`, HINT);
  if ('issues' in checked) {
    if ('value' in parseJsonWith(content, earlierReportSchema)) {
      throw new AspError('BAD_INPUT', `${file} is a batch report of an asp from before --shard: it does not say which task list it is of`, 'run that batch again with this asp');
    }
    throw new AspError('BAD_INPUT', `${file} is not an asp batch report: ${checked.issues}`, HINT);
  }
  return checked.value;
}
