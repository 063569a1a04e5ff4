import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AspError, errorMessage } from '../asp-error.js';
import { formatSupervisor, parseSupervisor, type Ownership } from '../docker/labels.js';

export const OWNER_FILE = '.asp-owner.json';

export type WorkspaceStatus = 'running' | 'passed' | 'failed' | 'timeout' | 'interrupted' | 'error';

/** The host side of one task, as the seed lays it out: `<root>/<task-id>/repo` and `<root>/<task-id>/.asp`. */
export interface HostWorkspace {
  taskId: string;
  dir: string;
  repoDir: string;
  artifactsDir: string;
}

export function workspacePaths(root: string, taskId: string): HostWorkspace {
  const dir = path.join(root, taskId);
  return { taskId, dir, repoDir: path.join(dir, 'repo'), artifactsDir: path.join(dir, '.asp') };
}

/**
 * Claims `<root>/<id>` atomically (mkdir without recursive fails on EEXIST). With `unique`, an id already taken
 * gets a numeric suffix, so two runs started in the same minute never share a workspace.
 */
export async function claimWorkspace(root: string, taskId: string, options: { unique: boolean }): Promise<HostWorkspace> {
  await mkdir(root, { recursive: true, mode: 0o755 }).catch((error: unknown) => {
    throw new AspError('WORKSPACE_FAILED', `cannot create the workspace root ${root}: ${errorMessage(error)}`, 'set ASP_WORKSPACES to a writable directory');
  });
  for (let attempt = 1; attempt <= 100; attempt += 1) {
    const id = attempt === 1 ? taskId : `${taskId.slice(0, 58)}-${attempt}`;
    const paths = workspacePaths(root, id);
    try {
      await mkdir(paths.dir, { mode: 0o755 });
      await mkdir(paths.artifactsDir, { mode: 0o755 });
      return paths;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new AspError('WORKSPACE_FAILED', `cannot create ${paths.dir}: ${errorMessage(error)}`, 'check permissions and free space under ASP_WORKSPACES');
      }
      if (!options.unique) {
        throw new AspError('BAD_INPUT', `task id "${taskId}" is already used by ${paths.dir}`, 'pick another --id, or remove that workspace (asp workspaces prune)');
      }
    }
  }
  throw new AspError('WORKSPACE_FAILED', `no free workspace name for ${taskId}`, 'prune old workspaces (asp workspaces prune)');
}

export interface OwnerRecord {
  taskId: string;
  runId: string;
  supervisor: string;
  expiresAt: string;
  keep: boolean;
  status: WorkspaceStatus;
  createdAt: string;
  finishedAt?: string;
}

export async function writeOwnerFile(workspace: HostWorkspace, owner: Ownership, status: WorkspaceStatus, createdAt: Date, finishedAt?: Date): Promise<void> {
  const record: OwnerRecord = {
    taskId: owner.taskId,
    runId: owner.runId,
    supervisor: formatSupervisor(owner.supervisor),
    expiresAt: owner.expiresAt.toISOString(),
    keep: owner.keep,
    status,
    createdAt: createdAt.toISOString(),
    ...(finishedAt ? { finishedAt: finishedAt.toISOString() } : {}),
  };
  await writeFile(path.join(workspace.dir, OWNER_FILE), JSON.stringify(record, null, 2) + '\n');
}

export async function readOwnerFile(dir: string): Promise<OwnerRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(path.join(dir, OWNER_FILE), 'utf8')) as OwnerRecord;
    if (typeof record.taskId !== 'string' || !parseSupervisor(record.supervisor)) return undefined;
    return record;
  } catch {
    return undefined;
  }
}

/** Removes a path; one already gone is success. */
export async function removePath(target: string): Promise<void> {
  await rm(target, { recursive: true, force: true, maxRetries: 3 });
}
