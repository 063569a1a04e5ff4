import { z } from 'zod';
import { describeIssue } from '../config/task-spec.js';
import { TRACE_SCHEMA, type TraceDocument } from './trace-model.js';

/**
 * `asp.trace/v1` as read back from disk (the trace store, the outbox, a `.asp/trace.json`). Files there can be
 * truncated by a crash or edited by hand, and the Langfuse server rejects a whole batch when one span has a bad
 * id: so ids are checked here, at the edge, before anything is built from them.
 */
const hex = (length: number) =>
  z
    .string()
    .regex(new RegExp(`^[0-9a-f]{${length}}$`), `must be ${length} lowercase hex digits`)
    .refine((id) => !/^0+$/.test(id), { message: 'must not be all zeros' });
const isoTime = z.string().refine((text) => !Number.isNaN(Date.parse(text)), { message: 'must be an ISO time' });
const numbers = z.record(z.string(), z.number());

const metadataSchema = z.looseObject({
  task_id: z.string(),
  target_repo: z.string(),
  target_branch: z.string(),
  workspace_path: z.string(),
  pr_url: z.string().nullable(),
  hitl_required: z.boolean(),
  hitl_status: z.string(),
  run_id: z.string(),
  commit: z.string().nullable(),
  image: z.string().nullable(),
  image_id: z.string().max(200).optional(),
  limits: numbers,
  exit_status: z.enum(['passed', 'failed', 'timeout', 'interrupted', 'error']),
  exit_code: z.number().int(),
});

const observationSchema = z.looseObject({
  id: hex(16),
  traceId: hex(32),
  parentObservationId: hex(16).nullable(),
  type: z.enum(['SPAN', 'GENERATION', 'EVENT']),
  name: z.string(),
  startTime: isoTime,
  endTime: isoTime.nullable(),
  level: z.enum(['DEBUG', 'DEFAULT', 'WARNING', 'ERROR']),
  statusMessage: z.string().nullable(),
  input: z.unknown(),
  output: z.unknown(),
  metadata: z.record(z.string(), z.unknown()),
  model: z.string().optional(),
  modelParameters: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
  completionStartTime: isoTime.optional(),
  usageDetails: numbers.optional(),
  costDetails: numbers.optional(),
});

const scoreSchema = z.looseObject({
  id: z.string().min(1).max(128),
  traceId: hex(32),
  name: z.string().min(1),
  value: z.number(),
  dataType: z.enum(['NUMERIC', 'CATEGORICAL', 'BOOLEAN']),
  comment: z.string().nullable(),
});

const documentSchema = z
  .looseObject({
    schema: z.literal(TRACE_SCHEMA),
    trace: z.looseObject({
      id: hex(32),
      name: z.string().min(1),
      timestamp: isoTime,
      input: z.unknown(),
      output: z.unknown(),
      metadata: metadataSchema,
      tags: z.array(z.string()),
    }),
    observations: z.array(observationSchema),
    scores: z.array(scoreSchema),
  })
  .superRefine((document, ctx) => {
    const foreign = document.observations.findIndex((observation) => observation.traceId !== document.trace.id);
    if (foreign >= 0) ctx.addIssue({ code: 'custom', path: ['observations', foreign, 'traceId'], message: 'is not the trace id' });
  });

/** Parses and checks a trace document; throws a one-line reason (the caller names the file). */
export function parseTraceDocument(text: string): TraceDocument {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const parsed = documentSchema.safeParse(json);
  if (!parsed.success) throw new Error(`not an ${TRACE_SCHEMA} document: ${describeIssue(parsed.error)}`);
  return parsed.data as TraceDocument;
}
