import { AspError, errorMessage } from '../core/asp-error.js';
import { supervisorState, thisHost } from '../backend/ownership-labels.js';
import type { SandboxBackend } from '../backend/sandbox-backend.js';
import type { WallClock } from '../core/clock.js';
import { findDeadSandboxes, plannedItem, removeSandboxes, type SandboxTarget } from './reap-sandboxes.js';
import type { Liveness, ReapPolicy } from './reap-policy.js';
import type { ReapReport } from './reap-report.js';
import { cleanWorkspaces, findDeadWorkspaces, plannedWorkspaceItem } from './reap-workspaces.js';
import type { WorkspaceEntry } from '../workspace/workspace-list.js';

/**
 * Removals in flight at once. bench/reap.ts (100 orphans, 2 cores) measured 8, 16, 32 and 64 alike: past a few
 * calls the daemon itself is the limit, and fewer in flight leave it responsive to the run that is sweeping.
 */
export const DEFAULT_REAP_CONCURRENCY = 8;

export interface ReapDeps {
  backend: SandboxBackend;
  workspacesRoot: string;
  clock: WallClock;
  /** Defaults to checking /proc on this host. */
  liveness?: Liveness;
  concurrency?: number;
  /** The workspace root as already listed (the sweep lists it once for the reap and retention both). */
  workspaces?: WorkspaceEntry[] | undefined;
}

export interface ReapOptions {
  dryRun: boolean;
  all: boolean;
  olderThanMs?: number | undefined;
  /**
   * Also remove the runner runtimes of other asp versions (`asp reap` does; the sweep at every start does not: an
   * older asp still running a batch on the same daemon mounts its own runtime between tasks).
   */
  runtimes?: boolean | undefined;
}

/**
 * Finds and removes what asp owns and what is dead: containers, volumes and host dirs (see judge()). Docker and
 * the host dirs are handled side by side; a daemon that does not answer is reported, not fatal, so the host dirs
 * are reaped anyway. Idempotent: running it twice, or two at once, is safe.
 */
export async function reap(deps: ReapDeps, options: ReapOptions): Promise<ReapReport> {
  const here = thisHost();
  const policy: ReapPolicy = {
    now: deps.clock.now(),
    liveness: deps.liveness ?? ((identity) => supervisorState(identity, here)),
    all: options.all,
    olderThanMs: options.olderThanMs,
  };
  const concurrency = deps.concurrency ?? DEFAULT_REAP_CONCURRENCY;
  const report: ReapReport = {
    dryRun: options.dryRun,
    all: options.all,
    olderThanMs: options.olderThanMs ?? null,
    items: [],
    runtimes: [],
    skipped: {},
    docker: { ok: true },
  };

  const dockerPart = async () => {
    let targets: SandboxTarget[];
    try {
      targets = await findDeadSandboxes(deps.backend, policy, report.skipped);
    } catch (error) {
      report.docker = { ok: false, error: errorMessage(error), ...(error instanceof AspError ? { code: error.code, ...(error.hint ? { hint: error.hint } : {}) } : {}) };
      return [];
    }
    const items = options.dryRun ? targets.map(plannedItem) : await removeSandboxes(deps.backend, targets, concurrency);
    // Runtimes belong to no run: a runtime of another asp version goes whenever no sandbox mounts it.
    if (options.runtimes) report.runtimes = await deps.backend.removeStaleRuntimes({ dryRun: options.dryRun }).catch(() => []);
    return items;
  };
  const workspacePart = async () => {
    const targets = await findDeadWorkspaces(deps.workspaces ?? deps.workspacesRoot, policy, report.skipped);
    return options.dryRun ? targets.map(plannedWorkspaceItem) : cleanWorkspaces(targets, policy.now, Math.min(concurrency, 4));
  };

  // Both settle before anything is thrown, so no removal is left running behind the caller's back.
  const [dockerItems, workspaceItems] = await Promise.allSettled([dockerPart(), workspacePart()]);
  if (workspaceItems.status === 'rejected') throw workspaceItems.reason;
  if (dockerItems.status === 'rejected') throw dockerItems.reason;
  report.items = [...dockerItems.value, ...workspaceItems.value];
  return report;
}
