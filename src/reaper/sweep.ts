import { errorMessage } from '../core/asp-error.js';
import type { Settings } from '../config/settings.js';
import { formatAge } from '../config/units.js';
import type { SandboxBackend } from '../backend/sandbox-backend.js';
import type { WallClock } from '../core/clock.js';
import type { Log } from '../core/log.js';
import { deliveryHold } from '../delivery/delivery-plan.js';
import { listWorkspaces } from '../workspace/workspace-list.js';
import { pruneWorkspaces } from './prune-workspaces.js';
import { reap } from './reap.js';
import type { Liveness } from './reap-policy.js';
import { tally } from './reap-report.js';

export interface SweepDeps {
  backend: SandboxBackend;
  settings: Settings;
  clock: WallClock;
  log: Log;
  liveness?: Liveness;
}

export interface SweepResult {
  reaped: number;
  pruned: number;
  failed: number;
}

/**
 * The sweep every `asp run` starts with, side by side with its own start: reap what dead runs left (never kept
 * objects), then apply retention to finished tasks' dirs (never kept ones). It never throws and stays quiet
 * unless it removed something or failed to: a run must not fail, or get noisy, because of someone else's leftovers.
 * A daemon that does not answer is left for the run itself to report.
 */
export async function sweep(deps: SweepDeps): Promise<SweepResult> {
  const { log } = deps;
  const result: SweepResult = { reaped: 0, pruned: 0, failed: 0 };
  try {
    // The workspace root listed once for both (reading each dir's records costs about 0.2 ms of CPU, and a root holds
    // every task of the retention period): retention takes the listing as it was, less what the reap just changed.
    const root = deps.settings.workspacesRoot;
    // A root that cannot be listed is the reap's to report, as before (it lists again, and says why).
    // Tasks that finished within the retention period are not read at all: neither the reap nor retention has
    // anything to do with them yet (SettledFilter), and a busy root holds thousands.
    const workspaces = await listWorkspaces(root, deliveryHold, { now: deps.clock.now(), withinMs: deps.settings.retentionMs }).catch(() => undefined);
    const report = await reap({ backend: deps.backend, workspacesRoot: root, clock: deps.clock, workspaces, ...(deps.liveness ? { liveness: deps.liveness } : {}) }, { dryRun: false, all: false });
    const touched = new Set(report.items.filter((item) => item.kind === 'workspace').map((item) => item.name));
    const failed = report.items.filter((item) => item.outcome === 'failed');
    result.reaped = report.items.filter((item) => item.outcome === 'removed').length;
    result.failed += failed.length;
    if (result.reaped > 0) {
      const [containers, volumes, workspaces] = (['container', 'volume', 'workspace'] as const).map((kind) => tally(report.items, kind));
      log.info({ containers, volumes, workspaces }, `swept what dead runs left: ${containers} containers, ${volumes} volumes, ${workspaces} workspace dirs`);
    }
    if (failed.length) log.warn({ failed: failed.map((item) => item.name) }, `sweep could not remove ${failed.length} leftovers (asp reap retries): ${failed[0]?.error ?? ''}`);
    if (!report.docker.ok) log.debug({}, `sweep skipped Docker: ${report.docker.error ?? ''}`);

    const pruned = await pruneWorkspaces(
      { workspacesRoot: root, clock: deps.clock, workspaces: workspaces?.filter((entry) => !touched.has(entry.dir)), ...(deps.liveness ? { liveness: deps.liveness } : {}) },
      {
        olderThanMs: deps.settings.retentionMs,
        dryRun: false,
        all: false,
      },
    );
    const prunedFailed = pruned.items.filter((item) => item.outcome === 'failed');
    result.pruned = pruned.items.length - prunedFailed.length;
    result.failed += prunedFailed.length;
    if (result.pruned > 0) log.info({ pruned: result.pruned }, `retention: removed ${result.pruned} workspace dirs of tasks finished over ${formatAge(deps.settings.retentionMs)} ago`);
    if (prunedFailed.length) log.warn({}, `retention could not remove ${prunedFailed.length} workspace dirs: ${prunedFailed[0]?.error ?? ''}`);
  } catch (error) {
    result.failed += 1;
    log.warn({}, `sweep failed: ${errorMessage(error)} (asp reap retries)`);
  }
  return result;
}
