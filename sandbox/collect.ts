/**
 * What the sandbox sends back after its steps: the change bundles, and the list of `.asp/` artifacts with their
 * digests. Both read files that steps wrote, so the runner never opens those files itself: git runs as the step
 * user (change-bundle.ts), and so does the tar of `.asp/` that the runner digests as it streams by (tar-digest.ts).
 * The runner only reads their pipes.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { CHANGES_DIR, SANDBOX_ARTIFACTS_DIR, SANDBOX_REPOS_DIR, SANDBOX_TASK_FILE, SANDBOX_WORKSPACE, type ArtifactMessage, type SandboxTask, type WarningMessage } from '../src/protocol/messages.js';
import { bundleChanges, commitMessage, primaryTarget, type BundleTarget } from './change-bundle.js';
import { engineDiskFull } from './engine-disk.js';
import { tool, toolEnv } from './runtime-tools.js';
import { asStepUser } from './step-user.js';
import { TarDigest } from './tar-digest.js';

export const MAX_ARTIFACTS = 1000;
/** Largest `.asp/` tar kept from the listing pass to be streamed as it is (bigger ones are read again, streaming). */
const KEEP_MAX_BYTES = 1024 * 1024;
const ARTIFACTS_ROOT = path.relative(SANDBOX_WORKSPACE, SANDBOX_ARTIFACTS_DIR);
/** The host's own input in `.asp/`: never reported back, nor streamed (the host has its own copy). */
export const TAR_EXCLUDES = [`--exclude=${path.relative(SANDBOX_WORKSPACE, SANDBOX_TASK_FILE)}`];

type CollectorLine = ArtifactMessage | WarningMessage;

/**
 * Bundles the changes (when the steps passed), then lists every artifact with its digest. Resolves with their
 * count and bytes, and whether the list is complete (at most MAX_ARTIFACTS are reported).
 */
export async function collectArtifacts(task: SandboxTask, bundle: boolean, emit: (line: CollectorLine) => void): Promise<{ files: number; bytes: number; complete: boolean; tar: Buffer | undefined }> {
  if (bundle) await collectChanges(task, (message) => emit({ type: 'warning', message }), emit);
  const digest = new TarDigest();
  // A small `.asp/` (the common case) is kept as it is read, so the same tar is what the runner streams back.
  let kept: Buffer[] | undefined = [];
  let keptBytes = 0;
  const failure = await new Promise<string | undefined>((resolve) => {
    const tar = spawn(tool('tar'), ['-c', '-f', '-', '-C', SANDBOX_WORKSPACE, ...TAR_EXCLUDES, ARTIFACTS_ROOT], asStepUser({ stdio: ['ignore', 'pipe', 'ignore'], env: toolEnv() }));
    tar.stdout.on('data', (chunk: Buffer) => {
      digest.push(chunk);
      keptBytes += chunk.length;
      if (keptBytes > KEEP_MAX_BYTES) kept = undefined;
      else kept?.push(chunk);
    });
    tar.on('error', (error) => resolve(error.message));
    // tar exits 1 when a file changed as it read it, 2 on a fatal error; whatever it listed is still what it read.
    tar.on('close', (code) => {
      // Kept only when tar read everything unchanged (exit 0): a tar of a tree that changed under it is not sent.
      if (code !== 0) kept = undefined;
      resolve(code === 0 || code === 1 ? undefined : `tar exited ${code}`);
    });
  });
  if (failure) emit({ type: 'warning', message: `could not list .asp/: ${failure}` });
  let bytes = 0;
  const files = digest.files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const file of files.slice(0, MAX_ARTIFACTS)) {
    bytes += file.bytes;
    emit({ type: 'artifact', path: path.posix.relative(ARTIFACTS_ROOT, file.name), sha256: file.sha256, bytes: file.bytes });
  }
  const complete = !failure && files.length <= MAX_ARTIFACTS;
  const tar = complete && kept ? Buffer.concat(kept, keptBytes) : undefined;
  return { files: Math.min(files.length, MAX_ARTIFACTS), bytes, complete, tar };
}

/** Bundles what the steps changed; a failure to bundle is a warning, never a failed task. */
async function collectChanges(task: SandboxTask, warn: (message: string) => void, emitFault: (fault: WarningMessage) => void): Promise<void> {
  const message = commitMessage(task.task, task.taskId);
  const targets: Array<[string, BundleTarget]> = [
    ['repo', primaryTarget(task.baseCommit)],
    ...(task.repos ?? []).map((repo): [string, BundleTarget] => [
      `repos/${repo.name}`,
      {
        repoDir: path.join(SANDBOX_REPOS_DIR, repo.name),
        base: repo.baseCommit,
        bundle: path.join(SANDBOX_ARTIFACTS_DIR, CHANGES_DIR, `${repo.name}.bundle`),
        patch: path.join(SANDBOX_ARTIFACTS_DIR, CHANGES_DIR, `${repo.name}.patch`),
      },
    ]),
  ];
  for (const [label, target] of targets) {
    try {
      await bundleChanges(target, task.branch, message);
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      warn(`could not bundle the changes of ${label}: ${text.split('\n')[0]}`);
      // Changes lost to a full engine disk must not pass as a task that changed nothing.
      const full = await engineDiskFull(`while bundling the changes of ${label}`, text);
      if (full) emitFault(full);
    }
  }
}
