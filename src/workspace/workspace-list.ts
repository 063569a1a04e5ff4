import { existsSync, lstatSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { AspError, errorMessage, systemErrorCode } from '../core/asp-error.js';
import { readOwnerFile, workspacePaths, type HostWorkspace, type OwnerRecord } from './host-workspace.js';
import { byCodePoint } from '../core/code-point-order.js';
import { hostFilePath } from './host-state.js';

/**
 * Whether a workspace's work waits for a person (`asp approve`), and why its delivery plan cannot be read when it
 * cannot. The delivery room answers it (delivery-plan.ts `deliveryHold`); it is passed in so this listing, which the
 * reaper and retention trust, never forgets to ask.
 */
export type DeliveryHold = (workspace: HostWorkspace, record: OwnerRecord) => Promise<{ awaiting: boolean; problem?: string }>;

/** One host dir under the workspace root that asp owns (it has a valid owner file). */
export interface WorkspaceEntry {
  /** The dir's name under the root: the task id the run claimed. */
  name: string;
  dir: string;
  record: OwnerRecord;
  /** Whether `repo/` (the host clone) is still there. */
  hasClone: boolean;
  /**
   * Waiting at the HITL gate, or its push failed, and the clone is still there: kept on purpose for `asp approve`.
   * Once the clone is gone (asp reap --all) nothing waits any more, and retention treats it like any other.
   */
  awaitingDecision: boolean;
  /** Why asp's own delivery plan (`.asp-host/delivery.json`) cannot be used, when it cannot: it is never acted on. */
  deliveryProblem?: string;
}

/**
 * Dirs the automatic sweep need not read (sweep.ts): those of tasks that finished less than `withinMs` ago. Their
 * result is written (the owner file's final word came before it), their clone is gone (nothing for the reap), and the
 * dir changed less than `withinMs` ago (it changes when its owner file is written, so it finished no earlier): not
 * due for retention either. Told by three stats instead of reading the dir's records, which cost ~0.2 ms of CPU each:
 * a root holds every task of the retention period (7 days), and every `asp run` sweeps it.
 */
export interface SettledFilter {
  now: Date;
  withinMs: number;
}

/**
 * The dirs under `root` that carry an owner file. Anything else (no owner file, a damaged one, a symlink) is not
 * asp's and is left out, so nothing downstream can touch it. With `settled`, recently finished tasks are left out
 * too, unread (SettledFilter).
 */
export async function listWorkspaces(root: string, hold: DeliveryHold, settled?: SettledFilter): Promise<WorkspaceEntry[]> {
  const children = await readdir(root, { withFileTypes: true }).catch((error: unknown) => {
    if (systemErrorCode(error) === 'ENOENT') return [];
    throw new AspError('WORKSPACE_FAILED', `cannot read the workspace root ${root}: ${errorMessage(error)}`, 'check ASP_WORKSPACES and its permissions');
  });
  // Dirents come from lstat: a symlink is never a directory here, so a planted link cannot send removal elsewhere.
  const dirs = children.filter((child) => child.isDirectory());
  const entries = await Promise.all(
    dirs.map(async (child): Promise<WorkspaceEntry | undefined> => {
      const workspace = workspacePaths(root, child.name);
      const { dir } = workspace;
      if (settled && settledWithin(workspace, settled)) return undefined;
      const record = await readOwnerFile(dir);
      if (!record) return undefined;
      const [hasClone, delivery] = await Promise.all([exists(workspace.repoDir), hold(workspace, record)]);
      return {
        name: child.name,
        dir,
        record,
        hasClone,
        awaitingDecision: hasClone && delivery.awaiting,
        ...(delivery.problem ? { deliveryProblem: delivery.problem } : {}),
      };
    }),
  );
  return entries.filter((entry): entry is WorkspaceEntry => entry !== undefined).sort((a, b) => byCodePoint(a.name, b.name));
}

/**
 * Synchronous, on purpose: three stats that throw nothing (a missing file is no Error to build), where the same
 * asked of the thread pool cost thousands of promises and errors, and ~50 ms of garbage collection for 500 dirs.
 */
function settledWithin(workspace: HostWorkspace, settled: SettledFilter): boolean {
  if (!existsSync(hostFilePath(workspace, 'result')) || existsSync(workspace.repoDir)) return false;
  const info = lstatSync(workspace.dir, { throwIfNoEntry: false });
  return info !== undefined && settled.now.getTime() - info.mtimeMs < settled.withinMs;
}

/** Bytes on disk under `dir` (files only, links not followed); a file vanishing mid-walk counts as nothing. */
export async function directoryBytes(dir: string): Promise<number> {
  const children = await readdir(dir, { withFileTypes: true }).catch(() => []);
  let total = 0;
  for (const child of children) {
    const full = path.join(dir, child.name);
    if (child.isDirectory()) total += await directoryBytes(full);
    else if (child.isFile())
      total += await lstat(full).then(
        (stat) => stat.size,
        () => 0,
      );
  }
  return total;
}

async function exists(target: string): Promise<boolean> {
  return lstat(target).then(
    () => true,
    () => false,
  );
}
