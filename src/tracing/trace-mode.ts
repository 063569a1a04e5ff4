import { AspError } from '../core/asp-error.js';
import type { Settings } from '../config/settings.js';

/**
 * Where a run's trace goes besides the local JSON (`.asp/trace.json` and the trace store, always written):
 * - `langfuse`: sent to Langfuse at the end of the run (bounded); on failure it waits in the outbox;
 * - `json`: not sent now; with Langfuse keys set it waits in the outbox for `asp traces push` (send later);
 * - `off`: not sent and not queued; `asp traces push <task>` can still send it by hand.
 * Default: `langfuse` when LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are set, else `json`.
 */
export const TRACE_MODES = ['langfuse', 'json', 'off'] as const;
export type TraceMode = (typeof TRACE_MODES)[number];

function isTraceMode(flag: string): flag is TraceMode {
  return TRACE_MODES.some((mode) => mode === flag);
}

export function resolveTraceMode(flag: string | undefined, settings: Settings): TraceMode {
  if (flag === undefined) return settings.langfuse ? 'langfuse' : 'json';
  if (!isTraceMode(flag)) {
    throw new AspError('BAD_INPUT', `--trace "${flag}" is not a trace mode`, `use one of ${TRACE_MODES.join(', ')}`);
  }
  if (flag === 'langfuse' && !settings.langfuse) {
    throw new AspError('BAD_INPUT', '--trace langfuse needs Langfuse keys', 'set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (and LANGFUSE_BASE_URL for a self-hosted Langfuse)');
  }
  return flag;
}
