import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { AspError, errorMessage, systemErrorCode } from '../core/asp-error.js';
import { readOwnerFile, workspacePaths, type HostWorkspace, type OwnerRecord } from './host-workspace.js';
import { byCodePoint } from '../core/code-point-order.js';

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
 * The dirs under `root` that carry an owner file. Anything else (no owner file, a damaged one, a symlink) is not
 * asp's and is left out, so nothing downstream can touch it.
 */
export async function listWorkspaces(root: string, hold: DeliveryHold): Promise<WorkspaceEntry[]> {
  const children = await readdir(root, { withFileTypes: true }).catch((error: unknown) => {
    if (systemErrorCode(error) === 'ENOENT') return [];
    throw new AspError('WORKSPACE_FAILED', `cannot read the workspace root ${root}: ${errorMessage(error)}`, 'check ASP_WORKSPACES and its permissions');
  });
  // Dirents come from lstat: a symlink is never a directory here, so a planted link cannot send removal elsewhere.
  const dirs = children.filter((child) => child.isDirectory());
  const entries = await Promise.all(
    dirs.map(async (child): Promise<WorkspaceEntry | undefined> => {
      const dir = path.join(root, child.name);
      const record = await readOwnerFile(dir);
      if (!record) return undefined;
      const [hasClone, delivery] = await Promise.all([exists(path.join(dir, 'repo')), hold(workspacePaths(root, child.name), record)]);
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
