import path from 'node:path';
import { errorMessage } from '../core/asp-error.js';
import { ExportFailure } from './export-failure.js';
import { exportToLangfuse, type LangfuseTarget } from './langfuse-exporter.js';
import type { TraceDocument } from './trace-model.js';
import { checkedTaskId, type TraceStore } from './trace-store.js';

export interface PushOutcome {
  delivered: Array<{ taskId: string; traceId: string; url: string; spans: number; scores: number; truncatedSpans: number }>;
  failed: Array<{ taskId: string; traceId: string; reason: string }>;
  /** Not tried: an earlier failure (down, slow, refused keys) would repeat for them. They stay in the outbox. */
  skipped: Array<{ taskId: string; traceId: string }>;
  /** Outbox files that cannot be read or are not traces: listed every time, never deleted, never in the way. */
  damaged: Array<{ file: string; reason: string }>;
}

export interface PushOptions {
  /** Only this task's traces; without it, the whole outbox. */
  taskId?: string | undefined;
  budgetMs: number;
  signal?: AbortSignal | undefined;
  onDelivered?: (entry: PushOutcome['delivered'][number]) => void;
}

/**
 * Delivers the outbox to Langfuse, oldest first. A trace leaves the outbox only once Langfuse took all of it;
 * sending one twice is harmless (its ids are derived, so Langfuse overwrites). For one task that has nothing in
 * the outbox, its stored trace is sent instead: the way to export a run made with `--trace off`.
 */
export async function pushTraces(store: TraceStore, target: LangfuseTarget, options: PushOptions): Promise<PushOutcome> {
  const outcome: PushOutcome = { delivered: [], failed: [], skipped: [], damaged: [] };
  const pending: Array<{ document: TraceDocument; queued: boolean }> = [];
  for (const entry of await store.outbox()) {
    if (entry.damaged !== undefined) outcome.damaged.push({ file: path.basename(entry.file), reason: entry.damaged });
    else if (options.taskId === undefined || entry.document.trace.name === options.taskId) pending.push({ document: entry.document, queued: true });
  }
  if (options.taskId !== undefined && pending.length === 0) {
    pending.push({ document: await store.read(checkedTaskId(options.taskId)), queued: false });
  }

  let stopped: ExportFailure | undefined;
  for (const { document, queued } of pending) {
    const ids = { taskId: document.trace.name, traceId: document.trace.id };
    if (stopped) {
      outcome.skipped.push(ids);
      continue;
    }
    try {
      const receipt = await exportToLangfuse(document, target, { budgetMs: options.budgetMs, signal: options.signal });
      // Langfuse has it: a receipt that cannot be written only makes `traces ls` say "no", never a failed push.
      await store.recordExport({ ...ids, url: receipt.url, exportedAt: new Date().toISOString(), spans: receipt.spans, scores: receipt.scores }).catch(() => {});
      if (queued) await store.dequeue(document.trace.id);
      const delivered = { ...ids, url: receipt.url, spans: receipt.spans, scores: receipt.scores, truncatedSpans: receipt.truncatedSpans };
      outcome.delivered.push(delivered);
      options.onDelivered?.(delivered);
    } catch (error) {
      const failure = error instanceof ExportFailure ? error : undefined;
      outcome.failed.push({ ...ids, reason: failure?.message ?? `unexpected error: ${errorMessage(error)}` });
      if (failure?.affectsAll) stopped = failure;
    }
  }
  return outcome;
}
