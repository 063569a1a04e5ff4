import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { AspError, errorMessage, systemErrorCode } from '../core/asp-error.js';
import { formatHostId, formatSupervisor, parseHostId, parseSupervisor, supervisorState, withHostId, type Ownership } from '../backend/ownership-labels.js';

export const OWNER_FILE = '.asp-owner.json';
/**
 * asp's own state of a task (delivery plan, result, task, events, the trace's master copy): beside `.asp/`, never
 * in it. The sandbox's `.asp/` is extracted into `.asp/` and nowhere else, so no file a step writes, whatever its
 * name, can land here: trust by location, not by a list of names.
 */
export const HOST_STATE_DIR = '.asp-host';

/**
 * The host side of one task: `<root>/<task-id>/repo` (the host's clone), `.asp/` (the sandbox's artifacts and copies
 * of the host's files for the user, as the seed lays it out), `.asp-host/` and `.asp-owner.json` (asp's own state).
 */
export interface HostWorkspace {
  taskId: string;
  dir: string;
  repoDir: string;
  artifactsDir: string;
  stateDir: string;
}

export function workspacePaths(root: string, taskId: string): HostWorkspace {
  const dir = path.join(root, taskId);
  return { taskId, dir, repoDir: path.join(dir, 'repo'), artifactsDir: path.join(dir, '.asp'), stateDir: path.join(dir, HOST_STATE_DIR) };
}

/**
 * Claims `<root>/<id>` atomically (mkdir without recursive fails on EEXIST). With `unique`, an id already taken
 * gets a numeric suffix, so two runs started in the same minute never share a workspace.
 */
export async function claimWorkspace(root: string, taskId: string, options: { unique: boolean; reclaimUnfinished?: boolean }): Promise<HostWorkspace> {
  await mkdir(root, { recursive: true, mode: 0o755 }).catch((error: unknown) => {
    throw new AspError('WORKSPACE_FAILED', `cannot create the workspace root ${root}: ${errorMessage(error)}`, 'set ASP_WORKSPACES to a writable directory');
  });
  for (let attempt = 1; attempt <= 100; attempt += 1) {
    const id = attempt === 1 ? taskId : `${taskId.slice(0, 58)}-${attempt}`;
    const paths = workspacePaths(root, id);
    try {
      await mkdir(paths.dir, { mode: 0o755 });
      await mkdir(paths.artifactsDir, { mode: 0o755 });
      await mkdir(paths.stateDir, { mode: 0o755 });
      return paths;
    } catch (error) {
      if (systemErrorCode(error) !== 'EEXIST') {
        throw new AspError('WORKSPACE_FAILED', `cannot create ${paths.dir}: ${errorMessage(error)}`, 'check permissions and free space under ASP_WORKSPACES');
      }
      if (!options.unique && options.reclaimUnfinished && (await unfinished(paths.dir))) {
        // A retry or --resume of a run that never finished takes its id back; a finished or live run is never touched.
        await removePath(paths.dir);
        attempt -= 1;
        continue;
      }
      if (!options.unique) {
        throw new AspError('BAD_INPUT', `task id "${taskId}" is already used by ${paths.dir}`, 'pick another --id, or remove that workspace (asp workspaces prune)');
      }
    }
  }
  throw new AspError('WORKSPACE_FAILED', `no free workspace name for ${taskId}`, 'prune old workspaces (asp workspaces prune)');
}

const STATUSES = ['running', 'passed', 'failed', 'timeout', 'interrupted', 'error', 'abandoned', 'awaiting_approval', 'rejected'] as const;

/**
 * The host dir's copy of the ownership labels, plus how the task ended. `abandoned` is written by the reaper:
 * the supervisor died while the task ran, so no one else will ever finish this record; `rejected` by
 * `asp approve --deny`, which discarded the task's pending changes.
 */
const ownerRecordSchema = z.object({
  taskId: z.string().min(1),
  runId: z.string().min(1),
  supervisor: z.string().refine((text) => parseSupervisor(text) !== undefined, 'must be host/pid/startTicks'),
  /** The label asp.supervisor-host-id; absent in the files of older asp versions. */
  supervisorHostId: z
    .string()
    .refine((text) => parseHostId(text) !== undefined, 'must be machine/boot/pid-namespace')
    .optional(),
  expiresAt: z.iso.datetime(),
  keep: z.boolean(),
  status: z.enum(STATUSES),
  createdAt: z.iso.datetime(),
  finishedAt: z.iso.datetime().optional(),
  /** When the reaper removed the clone of a dead run (or released a kept one). */
  reapedAt: z.iso.datetime().optional(),
});

export type OwnerRecord = z.infer<typeof ownerRecordSchema>;
export type WorkspaceStatus = OwnerRecord['status'];

export async function writeOwnerFile(workspace: HostWorkspace, owner: Ownership, status: WorkspaceStatus, createdAt: Date, finishedAt?: Date): Promise<void> {
  const record: OwnerRecord = {
    taskId: owner.taskId,
    runId: owner.runId,
    supervisor: formatSupervisor(owner.supervisor),
    ...(owner.supervisor.hostId ? { supervisorHostId: formatHostId(owner.supervisor.hostId) } : {}),
    expiresAt: owner.expiresAt.toISOString(),
    keep: owner.keep,
    status,
    createdAt: createdAt.toISOString(),
    ...(finishedAt ? { finishedAt: finishedAt.toISOString() } : {}),
  };
  await writeOwnerRecord(workspace.dir, record);
}

/** Rewrites the owner file with `changes`; used by the reaper to mark a dead run's dir. */
export async function updateOwnerFile(dir: string, record: OwnerRecord, changes: Partial<OwnerRecord>): Promise<OwnerRecord> {
  const updated = { ...record, ...changes };
  await writeOwnerRecord(dir, updated);
  return updated;
}

/** The record, or undefined when the dir has no valid owner file: then it is not asp's to touch. */
export async function readOwnerFile(dir: string): Promise<OwnerRecord | undefined> {
  try {
    const parsed = ownerRecordSchema.safeParse(JSON.parse(await readFile(path.join(dir, OWNER_FILE), 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The labels' view of an owner record, so dirs and Docker objects are judged by the same rules. */
export function ownershipOf(record: OwnerRecord): Ownership {
  // The schema refused a record whose supervisor does not parse; this is for the type, not a second check.
  const supervisor = withHostId(parseSupervisor(record.supervisor), record.supervisorHostId) ?? { host: '', pid: 0, startTicks: 0 };
  return {
    taskId: record.taskId,
    runId: record.runId,
    supervisor,
    expiresAt: new Date(record.expiresAt),
    keep: record.keep,
  };
}

async function writeOwnerRecord(dir: string, record: OwnerRecord): Promise<void> {
  // Write then rename: a reaper reading concurrently sees the old record or the new one, never half of one.
  const target = path.join(dir, OWNER_FILE);
  const temporary = `${target}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(record, null, 2) + '\n');
  await rename(temporary, target);
}

/** A workspace whose run ended without a result (interrupted, error, abandoned) or whose supervisor died mid-run. */
async function unfinished(dir: string): Promise<boolean> {
  const record = await readOwnerFile(dir);
  if (!record) return false;
  if (record.status === 'interrupted' || record.status === 'error' || record.status === 'abandoned') return true;
  return record.status === 'running' && supervisorState(ownershipOf(record).supervisor) === 'dead';
}

/** Removes a path; one already gone is success. */
export async function removePath(target: string): Promise<void> {
  await rm(target, { recursive: true, force: true, maxRetries: 3 });
}
