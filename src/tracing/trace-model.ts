import { createHash } from 'node:crypto';
import type { ObservationKind } from '../config/task-spec.js';

export type { ObservationKind };

/**
 * `asp.trace/v1`: one task as one trace, in Langfuse's own data model (trace, observations, scores), so the
 * local JSON and what Langfuse stores line up field for field and a later push can rebuild the same trace.
 */
export const TRACE_SCHEMA = 'asp.trace/v1';

export type ObservationLevel = 'DEBUG' | 'DEFAULT' | 'WARNING' | 'ERROR';
export type TaskStatus = 'passed' | 'failed' | 'timeout' | 'interrupted' | 'error';

/** The seed's trace metadata, exactly its keys, plus what asp adds. */
export interface TraceMetadata {
  task_id: string;
  target_repo: string;
  target_branch: string;
  workspace_path: string;
  pr_url: string | null;
  hitl_required: boolean;
  hitl_status: string;
  /** Who decided at the HITL gate, when, and what they said (absent until someone decides). */
  hitl_by?: string;
  hitl_at?: string;
  hitl_comment?: string;
  /** The other pull requests of a multi-repo task. */
  related_pr_urls?: string[];
  run_id: string;
  commit: string | null;
  image: string | null;
  /** The image's content-addressed id (sha256:…): which image ran, whatever its tag names later. */
  image_id?: string;
  limits: Record<string, number>;
  exit_status: TaskStatus;
  exit_code: number;
}

export interface TraceRecord {
  id: string;
  name: string;
  timestamp: string;
  input: unknown;
  output: unknown;
  metadata: TraceMetadata;
  tags: string[];
  /** Langfuse's session: the batch the task ran in (its id), or `--session`. */
  sessionId?: string;
  /** Langfuse's user: `--user`, ASP_TRACE_USER, the CI actor or the host user. */
  userId?: string;
  /** LANGFUSE_TRACING_ENVIRONMENT when the trace was made (`default` unless set): its spans' and its scores'. */
  environment?: string;
  /** LANGFUSE_RELEASE when the trace was made. */
  release?: string;
  /** The asp that made it. */
  version?: string;
}

export interface Observation {
  id: string;
  traceId: string;
  parentObservationId: string | null;
  type: 'SPAN' | 'GENERATION' | 'EVENT';
  name: string;
  startTime: string;
  endTime: string | null;
  level: ObservationLevel;
  statusMessage: string | null;
  input: unknown;
  output: unknown;
  metadata: Record<string, unknown>;
  /**
   * Langfuse's observation type when it is more than `type` says: `agent`, `evaluator`, `tool`, `chain`... (a
   * SPAN's). Absent: `span`, `generation`, `event` from `type`.
   */
  asType?: ObservationKind;
  model?: string;
  /** The sampling parameters the request set (temperature, max_tokens, …): a GENERATION's, when it set any. */
  modelParameters?: Record<string, string | number>;
  /** ISO time the first chunk of a streamed answer reached the host: a streamed GENERATION's. */
  completionStartTime?: string;
  /** Langfuse's usage keys: `input` (not from the cache), `input_cached_tokens`, `output`, `total`. */
  usageDetails?: Record<string, number>;
  /** The same keys, in USD; `total` is what budgets and probe_cost_usd count. */
  costDetails?: Record<string, number>;
}

export interface Score {
  id: string;
  traceId: string;
  name: string;
  value: number;
  dataType: 'NUMERIC' | 'CATEGORICAL' | 'BOOLEAN';
  comment: string | null;
}

export interface TraceDocument {
  schema: typeof TRACE_SCHEMA;
  trace: TraceRecord;
  observations: Observation[];
  scores: Score[];
}

/** The trace id is derived, never random: the same task and run always map to the same trace, so a re-push overwrites. */
export function traceIdFor(taskId: string, runId: string): string {
  return createHash('sha256').update(`asp-trace\0${taskId}\0${runId}`).digest('hex').slice(0, 32);
}

/** Observation and score ids are derived from the trace id and a stable key, for the same reason. */
export function childIdFor(traceId: string, key: string, length = 16): string {
  return createHash('sha256').update(`${traceId}\0${key}`).digest('hex').slice(0, length);
}
