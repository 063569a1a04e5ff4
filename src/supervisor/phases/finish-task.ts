import path from 'node:path';
import { readdir } from 'node:fs/promises';
import type { DeliveryOutcome } from '../../core/records.js';
import { HOST_FILES } from '../../workspace/host-state.js';
import { writeResultFile } from '../../workspace/result-file.js';
import { removePath, writeOwnerFile, type HostWorkspace } from '../../workspace/host-workspace.js';
import { withDelivery, type TaskResult, type TaskRun } from '../task-result.js';

/** What delivery after the run decided; absent when the task asked for none. */
export interface DeliveryDecided {
  delivery: DeliveryOutcome | null;
  /** Something still waits for `asp approve` (a decision, or a failed push to try again): the clone stays. */
  pending: boolean;
}

/**
 * The last phase, once per task: the clone goes unless it is kept (--keep, or work waiting for asp approve), the
 * owner file gets its final status, and the result is written whole (`.asp-host/result.json` and its copy).
 */
export async function finishTask(run: TaskRun, decided: DeliveryDecided = { delivery: null, pending: false }): Promise<TaskResult> {
  const { result, workspace, spec } = run;
  const kept = spec.keep || decided.pending;
  if (!kept) {
    await removePath(workspace.repoDir);
    await removePath(path.join(workspace.dir, 'repos'));
  }
  const finished: TaskResult = {
    ...withDelivery(result, decided.delivery, kept),
    // result.json is written just below, from this very object: it is one of the artifacts it lists.
    artifacts: withResultFile(await listArtifacts(workspace)),
    traceDelivery: run.trace.published?.delivery ?? result.traceDelivery,
  };
  await writeOwnerFile(workspace, run.owner, finished.status, run.startedAt, run.finishedAt);
  await writeResultFile(workspace, finished);
  return finished;
}

function withResultFile(artifacts: string[]): string[] {
  const result = HOST_FILES.result;
  return artifacts.includes(result) ? artifacts : [...artifacts, result].sort();
}

async function listArtifacts(workspace: HostWorkspace): Promise<string[]> {
  const entries = await readdir(workspace.artifactsDir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(workspace.artifactsDir, path.join(entry.parentPath, entry.name)))
    .sort();
}
