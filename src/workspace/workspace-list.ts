import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { AspError, errorMessage } from '../asp-error.js';
import { loadDeliveries, pending } from '../delivery/delivery-plan.js';
import { readOwnerFile, type OwnerRecord } from './host-workspace.js';

/** One host dir under the workspace root that asp owns (it has a valid owner file). */
export interface WorkspaceEntry {
  /** The dir's name under the root: the task id the run claimed. */
  name: string;
  dir: string;
  record: OwnerRecord;
  /** Whether `repo/` (the host clone) is still there. */
  hasClone: boolean;
  /** Waiting at the HITL gate, or its push failed: the clone is kept on purpose for `asp approve`. */
  awaitingDecision: boolean;
}

/**
 * The dirs under `root` that carry an owner file. Anything else (no owner file, a damaged one, a symlink) is not
 * asp's and is left out, so nothing downstream can touch it.
 */
export async function listWorkspaces(root: string): Promise<WorkspaceEntry[]> {
  const children = await readdir(root, { withFileTypes: true }).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new AspError('WORKSPACE_FAILED', `cannot read the workspace root ${root}: ${errorMessage(error)}`, 'check ASP_WORKSPACES and its permissions');
  });
  // Dirents come from lstat: a symlink is never a directory here, so a planted link cannot send removal elsewhere.
  const dirs = children.filter((child) => child.isDirectory());
  const entries = await Promise.all(
    dirs.map(async (child): Promise<WorkspaceEntry | undefined> => {
      const dir = path.join(root, child.name);
      const record = await readOwnerFile(dir);
      if (!record) return undefined;
      const [hasClone, awaitingDecision] = await Promise.all([exists(path.join(dir, 'repo')), awaitsDecision(dir, record)]);
      return { name: child.name, dir, record, hasClone, awaitingDecision };
    }),
  );
  return entries.filter((entry): entry is WorkspaceEntry => entry !== undefined).sort((a, b) => a.name.localeCompare(b.name));
}

/** Bytes on disk under `dir` (files only, links not followed); a file vanishing mid-walk counts as nothing. */
export async function directoryBytes(dir: string): Promise<number> {
  const children = await readdir(dir, { withFileTypes: true }).catch(() => []);
  let total = 0;
  for (const child of children) {
    const full = path.join(dir, child.name);
    if (child.isDirectory()) total += await directoryBytes(full);
    else if (child.isFile()) total += await lstat(full).then((stat) => stat.size, () => 0);
  }
  return total;
}

async function awaitsDecision(dir: string, record: OwnerRecord): Promise<boolean> {
  if (record.status === 'awaiting_approval') return true;
  // A failed push leaves status "failed" but keeps the clone so `asp approve` can try again: delivery.json says so.
  const entries = await loadDeliveries(path.join(dir, '.asp'));
  return entries !== undefined && pending(entries);
}

async function exists(target: string): Promise<boolean> {
  return lstat(target).then(
    () => true,
    () => false,
  );
}
