import { constants } from 'node:fs';
import { copyFile, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage, systemErrorCode } from '../core/asp-error.js';
import { writeFileAtomically } from '../core/atomic-write.js';
import type { PackEntry } from './tar-pack.js';
import { SANDBOX_TASK_TEXT_FILE, SANDBOX_WORKSPACE } from '../protocol/messages.js';
import { HOST_STATE_DIR, OWNER_FILE, type HostWorkspace } from './host-workspace.js';

/** The files asp writes for itself in `<task dir>/.asp-host/`; only these are ever read back as asp's own. */
export const HOST_FILES = {
  task: 'task.json',
  events: 'events.jsonl',
  trace: 'trace.json',
  result: 'result.json',
  delivery: 'delivery.json',
} as const;
export type HostFile = keyof typeof HOST_FILES;

type Paths = Pick<HostWorkspace, 'stateDir' | 'artifactsDir'>;

/** Where asp keeps (and reads back) one of its files: `.asp-host/<name>`, which the sandbox cannot write. */
export function hostFilePath(workspace: Pick<HostWorkspace, 'stateDir'>, file: HostFile): string {
  return path.join(workspace.stateDir, HOST_FILES[file]);
}

/** Where the user's copy of it goes, as the seed lays out `.asp/`: written by asp, never read by asp. */
export function userCopyPath(workspace: Pick<HostWorkspace, 'artifactsDir'>, file: HostFile): string {
  return path.join(workspace.artifactsDir, HOST_FILES[file]);
}

/** Writes one of asp's files (aside, then renamed: a reader sees the old one or the new one, never half). */
export async function writeHostFile(workspace: Pick<HostWorkspace, 'stateDir'>, file: HostFile, content: string): Promise<string> {
  const target = hostFilePath(workspace, file);
  await writeFileAtomically(target, content);
  return target;
}

/**
 * Copies asp's file into `.asp/` for the user, over whatever the sandbox left under that name (a file, or a
 * directory: the copy-out let it through as data). Called after the copy-out, so nothing comes after it.
 */
export async function copyForUser(workspace: Paths, file: HostFile): Promise<string> {
  const target = userCopyPath(workspace, file);
  await rm(target, { recursive: true, force: true });
  // COPYFILE_EXCL: the name was just cleared, so anything there now is not asp's to write through.
  await copyFile(hostFilePath(workspace, file), target, constants.COPYFILE_EXCL);
  return target;
}

/** Copies each of `files` that asp wrote; one it never wrote (nothing ran) is skipped, a failure is a warning. */
export async function copyAllForUser(workspace: Paths, files: HostFile[], warn: (message: string) => void): Promise<void> {
  for (const file of files) {
    await copyForUser(workspace, file).catch((error: unknown) => {
      if (systemErrorCode(error) !== 'ENOENT') warn(`.asp/${HOST_FILES[file]} not written: ${errorMessage(error)}`);
    });
  }
}

/** Reads one of asp's files, or undefined when it was never written. */
export async function readHostFile(workspace: Pick<HostWorkspace, 'stateDir'>, file: HostFile): Promise<string | undefined> {
  try {
    return await readFile(hostFilePath(workspace, file), 'utf8');
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

const HOST_NAMES: ReadonlySet<string> = new Set([...Object.values(HOST_FILES), OWNER_FILE, HOST_STATE_DIR]);

/**
 * The files that came out of the sandbox under a name of asp's own files, at any depth (`.asp/delivery.json`,
 * `.asp/x/.asp-host/result.json`). Nothing depends on it for safety (asp never reads `.asp/` as its state): it only
 * says so, because a step that writes them is either confused or probing.
 */
export function plantedHostNames(files: string[]): string[] {
  return files.filter((file) => file.split('/').some((segment) => HOST_NAMES.has(segment)));
}

/** Where the host keeps the task text, whole; it goes into every sandbox as `.asp/task.txt` ($ASP_TASK_FILE). */
export function taskTextFile(workspace: Pick<HostWorkspace, 'stateDir'>): string {
  return path.join(workspace.stateDir, 'task.txt');
}

/** The task text's entry in a sandbox's workspace tar (packed relative to the task dir). */
export function taskTextEntry(workspace: Pick<HostWorkspace, 'stateDir' | 'dir'>): PackEntry {
  return { from: path.relative(workspace.dir, taskTextFile(workspace)), as: path.posix.relative(SANDBOX_WORKSPACE, SANDBOX_TASK_TEXT_FILE) };
}
