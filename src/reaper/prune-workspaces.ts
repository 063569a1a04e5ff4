import { errorMessage } from '../core/asp-error.js';
import { supervisorState, thisHost } from '../backend/ownership-labels.js';
import type { WallClock } from '../core/clock.js';
import { archiveArtifacts } from '../workspace/artifact-archive.js';
import { removePath } from '../workspace/host-workspace.js';
import { directoryBytes, listWorkspaces, type WorkspaceEntry } from '../workspace/workspace-list.js';
import { deliveryHold } from '../delivery/delivery-plan.js';
import { mapBounded } from '../core/bounded-pool.js';
import { judgePrune, type Liveness } from './reap-policy.js';

export interface PruneDeps {
  workspacesRoot: string;
  clock: WallClock;
  liveness?: Liveness;
  /** The workspace root as already listed (the sweep lists it once for the reap and retention both). */
  workspaces?: WorkspaceEntry[] | undefined;
}

export interface PruneOptions {
  olderThanMs: number;
  dryRun: boolean;
  /** Also kept tasks; the automatic sweep never sets it. */
  all: boolean;
  /** Write `<dir>/<task>.tar.gz` of `.asp/` before deleting; a dir whose archive fails is not deleted. */
  archiveDir?: string | undefined;
}

export interface PruneItem {
  taskId: string;
  dir: string;
  status: string;
  ageMs: number;
  bytes: number;
  outcome: 'pruned' | 'would-prune' | 'failed';
  archive?: string;
  error?: string;
}

export interface PruneReport {
  dryRun: boolean;
  olderThanMs: number;
  items: PruneItem[];
  /** Left alone because kept with --keep or awaiting a decision (`asp approve`); --all takes them. */
  kept: number;
}

/** Deletions in flight at once: file-system work, so a few are enough. */
const PRUNE_CONCURRENCY = 4;

/** Retention: deletes whole host dirs (`.asp/` included) of tasks that finished longer ago than `olderThanMs`. */
export async function pruneWorkspaces(deps: PruneDeps, options: PruneOptions): Promise<PruneReport> {
  const now = deps.clock.now();
  const here = thisHost();
  const liveness = deps.liveness ?? ((identity) => supervisorState(identity, here));
  const entries = deps.workspaces ?? (await listWorkspaces(deps.workspacesRoot, deliveryHold));
  let kept = 0;
  const due = entries.flatMap((entry) => {
    const verdict = judgePrune(entry.record, entry.awaitingDecision, { now, liveness, olderThanMs: options.olderThanMs, all: options.all });
    if (!verdict.prune && (verdict.reason === 'kept' || verdict.reason === 'awaiting-decision')) kept += 1;
    return verdict.prune ? [{ entry, ageMs: verdict.ageMs }] : [];
  });
  const items = await mapBounded(due, PRUNE_CONCURRENCY, async ({ entry, ageMs }): Promise<PruneItem> => {
    const base = { taskId: entry.record.taskId, dir: entry.dir, status: entry.record.status, ageMs, bytes: await directoryBytes(entry.dir) };
    if (options.dryRun) return { ...base, outcome: 'would-prune' };
    try {
      const archive = options.archiveDir ? await archiveArtifacts(entry, options.archiveDir) : undefined;
      await removePath(entry.dir);
      return { ...base, outcome: 'pruned', ...(archive ? { archive } : {}) };
    } catch (error) {
      return { ...base, outcome: 'failed', error: errorMessage(error) };
    }
  });
  return { dryRun: options.dryRun, olderThanMs: options.olderThanMs, items, kept };
}
