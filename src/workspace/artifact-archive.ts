import { createWriteStream } from 'node:fs';
import { lstat, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tarFs from 'tar-fs';
import { AspError, errorMessage } from '../core/asp-error.js';
import { HOST_STATE_DIR, OWNER_FILE } from './host-workspace.js';
import type { WorkspaceEntry } from './workspace-list.js';

/**
 * Writes `<archiveDir>/<task>.tar.gz` holding the task's `.asp/`, `.asp-host/` and owner file (under `<task>/`), before a prune
 * deletes them. The file appears only when complete (written aside, then renamed), and an existing archive is
 * never overwritten: a second archive of the same name gets the run id.
 */
export async function archiveArtifacts(entry: WorkspaceEntry, archiveDir: string): Promise<string> {
  await mkdir(archiveDir, { recursive: true }).catch((error: unknown) => {
    throw new AspError('WORKSPACE_FAILED', `cannot create the archive dir ${archiveDir}: ${errorMessage(error)}`, 'pass a writable --archive dir');
  });
  const present = await Promise.all(['.asp', HOST_STATE_DIR, OWNER_FILE].map(async (name) => ((await exists(path.join(entry.dir, name))) ? name : undefined)));
  const entries = present.filter((name): name is string => name !== undefined);
  const target = await freeName(archiveDir, entry);
  const partial = `${target}.partial`;
  try {
    const pack = tarFs.pack(entry.dir, {
      entries,
      // .asp/ holds only plain files that passed the copy-out checks; links, if any, stay links.
      dereference: false,
      map: (header) => ({ ...header, name: `${entry.name}/${header.name}` }),
    });
    await pipeline(pack, createGzip(), createWriteStream(partial, { flags: 'wx' }));
    await rename(partial, target);
    return target;
  } catch (error) {
    await rm(partial, { force: true });
    throw new AspError('WORKSPACE_FAILED', `cannot archive ${entry.dir}: ${errorMessage(error)}`, 'check free space and permissions of the --archive dir');
  }
}

async function freeName(archiveDir: string, entry: WorkspaceEntry): Promise<string> {
  const plain = path.join(archiveDir, `${entry.name}.tar.gz`);
  if (!(await exists(plain))) return plain;
  return path.join(archiveDir, `${entry.name}-${entry.record.runId}.tar.gz`);
}

async function exists(target: string): Promise<boolean> {
  return lstat(target).then(
    () => true,
    () => false,
  );
}
