import type { Attributes } from '@opentelemetry/api';
import { LangfuseOtelSpanAttributes } from '@langfuse/core';
import { createObservationAttributes, createTraceAttributes, type LangfuseObservationType } from '@langfuse/tracing';
import type { Observation, TraceDocument } from './trace-model.js';

/**
 * Langfuse keeps trace metadata only when it is a string of at most 200 characters (a boolean such as
 * `hitl_required: true` is silently dropped), so every value is sent as text and cut to fit.
 */
export const TRACE_METADATA_MAX_CHARS = 200;
/** Input and output of one observation: enough to read a failure, small enough for 10,000 spans in one push. */
export const IO_MAX_CHARS = 32 * 1024;
const OBSERVATION_METADATA_MAX_CHARS = 2048;

/** The seed's trace metadata: the keys Langfuse users filter and aggregate observations by. */
export const SEED_METADATA_KEYS = ['task_id', 'target_repo', 'target_branch', 'workspace_path', 'pr_url', 'hitl_required', 'hitl_status'] as const;

const OBSERVATION_TYPES = { SPAN: 'span', GENERATION: 'generation', EVENT: 'event' } as const satisfies Record<Observation['type'], LangfuseObservationType>;

/**
 * Trace name, tags and metadata, as `propagateAttributes` would set them. The root span carries all of the
 * metadata; every other span carries the name, the tags and the seed's keys, because Langfuse aggregates and
 * filters observations only by trace attributes found on the span itself (and a split push may deliver spans
 * without their root). asp's extra keys (run, commit, image, limits, exit status) stay on the root: on 10,000
 * spans they would cost a quarter of the payload for values that are the trace's, not the observation's.
 */
export function traceAttributes(document: TraceDocument, span: 'root' | 'child'): Attributes {
  const { sessionId, userId } = document.trace;
  const attributes: Attributes = {
    [LangfuseOtelSpanAttributes.TRACE_NAME]: document.trace.name,
    [LangfuseOtelSpanAttributes.TRACE_TAGS]: document.trace.tags,
    // Every span, not the root alone: Langfuse's Sessions and Users views group observations by what they carry.
    ...(sessionId ? { [LangfuseOtelSpanAttributes.TRACE_COMPAT_SESSION_ID]: sessionId } : {}),
    ...(userId ? { [LangfuseOtelSpanAttributes.TRACE_COMPAT_USER_ID]: userId } : {}),
  };
  const metadata = document.trace.metadata;
  const entries: Array<[string, unknown]> = span === 'root' ? Object.entries(metadata) : SEED_METADATA_KEYS.map((key) => [key, metadata[key]]);
  for (const [key, value] of entries) attributes[`${LangfuseOtelSpanAttributes.TRACE_METADATA}.${key}`] = metadataText(value);
  return attributes;
}

/** The trace's own input and output: on the root span only. */
export function traceIoAttributes(document: TraceDocument): Attributes {
  return createTraceAttributes({ input: capped(document.trace.input), output: capped(document.trace.output) });
}

export function observationAttributes(observation: Observation): Attributes {
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(observation.metadata)) metadata[key] = cut(serialize(value), OBSERVATION_METADATA_MAX_CHARS);
  return createObservationAttributes(observation.asType ?? OBSERVATION_TYPES[observation.type], {
    level: observation.level,
    ...(observation.statusMessage !== null ? { statusMessage: observation.statusMessage } : {}),
    input: capped(observation.input),
    output: capped(observation.output),
    metadata,
    ...(observation.model !== undefined ? { model: observation.model } : {}),
    ...(observation.modelParameters !== undefined ? { modelParameters: observation.modelParameters } : {}),
    // The SDK sends a Date JSON-quoted; Langfuse's ingestion reads that form, older servers only that form.
    ...(observation.completionStartTime !== undefined ? { completionStartTime: new Date(observation.completionStartTime) } : {}),
    ...(observation.usageDetails !== undefined ? { usageDetails: observation.usageDetails } : {}),
    ...(observation.costDetails !== undefined ? { costDetails: observation.costDetails } : {}),
  });
}

/** Langfuse's metadata rule: text, at most 200 characters. null reads as "none" so the key is never lost. */
export function metadataText(value: unknown): string {
  if (value === null || value === undefined) return 'none';
  return cut(typeof value === 'string' ? value : serialize(value), TRACE_METADATA_MAX_CHARS);
}

/** Serialized once here, capped, and handed to the SDK as a string (which it passes through unchanged). */
function capped(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  const text = serialize(value);
  return text.length <= IO_MAX_CHARS ? text : `${text.slice(0, IO_MAX_CHARS)}…[asp: ${text.length - IO_MAX_CHARS} more characters in the local JSON]`;
}

function serialize(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Cuts to `max` characters in all, the last one an ellipsis, so a reader sees that something is missing. */
function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
