import type { AspErrorCode } from '../core/asp-error.js';
import type { ReapReason, SkipReason } from './reap-policy.js';

export type ReapKind = 'container' | 'pod' | 'volume' | 'workspace';

/** One object the reaper took (or, with --dry-run, would take). */
export interface ReapItem {
  kind: ReapKind;
  /** Container name, volume name, or the host dir's path. */
  name: string;
  taskId: string;
  runId: string;
  reason: ReapReason;
  outcome: 'removed' | 'would-remove' | 'in-use' | 'failed';
  /** For workspaces: what was done to the dir. */
  detail?: string;
  error?: string;
}

export interface ReapReport {
  dryRun: boolean;
  all: boolean;
  olderThanMs: number | null;
  items: ReapItem[];
  /** Objects asp owns that were left alone, by why. */
  skipped: Partial<Record<SkipReason | 'nothing-left', number>>;
  /** Runner runtimes of other asp versions removed (or, with --dry-run, to be removed): asp's image changed. */
  runtimes: string[];
  /** Whether the daemon could be listed: when it cannot, host dirs are still reaped and the report says why. */
  /** `code`: why the daemon part failed, so that a bad address is bad input (exit 2), not a daemon failure. */
  /** NetworkPolicies removed (k8s, `--all`, none of asp's pods left). */
  policies?: string[];
  docker: { ok: boolean; error?: string; hint?: string; code?: AspErrorCode };
}

export function countSkipped(into: ReapReport['skipped'], reason: SkipReason | 'nothing-left'): void {
  into[reason] = (into[reason] ?? 0) + 1;
}

export function tally(items: ReapItem[], kind: ReapKind): number {
  return items.filter((item) => item.kind === kind && (item.outcome === 'removed' || item.outcome === 'would-remove')).length;
}
