import { lstatSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AspError, errorMessage } from '../core/asp-error.js';
import type { Settings } from '../config/settings.js';
import { BRANCH_NAME_PATTERN, BRANCH_NAME_RULE, TASK_ID_PATTERN } from '../config/task-spec.js';
import type { Log } from '../core/log.js';
import { recordDelivery } from '../tracing/hitl-trace.js';
import { TracePublication } from '../tracing/publish-trace.js';
import type { TraceMode } from '../tracing/trace-mode.js';
import { parseTraceDocument } from '../tracing/trace-schema.js';
import { hostFilePath, readHostFile, userCopyPath } from '../workspace/host-state.js';
import { readOwnerFile, removePath, updateOwnerFile, workspacePaths, type HostWorkspace } from '../workspace/host-workspace.js';
import { rewriteResultFile } from '../workspace/result-file.js';
import { withDelivery } from '../supervisor/task-result.js';
import { deliverAll } from './deliver-changes.js';
import { deliveryContext } from './delivery-context.js';
import { isOpen, loadDeliveries, saveDeliveries, type DeliveryEntry, type DeliveryOutcome } from './delivery-plan.js';

export interface ApproveOptions {
  deny: boolean;
  /** Push under this branch instead of the one the sandbox committed on (after a push refused for its branch). */
  branch?: string | undefined;
  comment?: string | undefined;
  traceMode?: TraceMode | undefined;
}

export interface ApproveResult {
  taskId: string;
  /** passed: delivered; rejected: discarded with --deny; failed: the push (or PR) failed again and the work is kept. */
  status: 'passed' | 'rejected' | 'failed';
  delivery: DeliveryOutcome;
  /** Whether the host clone is still there, waiting for another `asp approve`. */
  kept: boolean;
  tracePath: string;
  /** Why the delivery failed, with what to do next; set exactly when status is failed. */
  error?: string;
}

/**
 * `asp approve <task> [--deny] [--branch B]`: finishes a task that waits at the HITL gate or whose push failed.
 * Approve pushes (and opens the PR) from the host's own clone of the task, to the remote its task spec named;
 * deny discards whatever is pending, without pushing anything. Everything it acts on is asp's own state in
 * `.asp-host/`, checked; nothing in `.asp/` (the sandbox's) is read. The decision, who, when and the comment go
 * into the trace, which is published again (to the outbox if Langfuse is away).
 */
export async function approveTask(taskId: string, options: ApproveOptions, deps: { settings: Settings; log: Log; warn: (message: string) => void }): Promise<ApproveResult> {
  if (!TASK_ID_PATTERN.test(taskId)) throw new AspError('BAD_INPUT', `"${taskId}" is not a task id`, 'pass the id asp run printed (asp workspaces ls lists them)');
  if (options.deny && options.branch !== undefined) throw new AspError('BAD_INPUT', '--branch and --deny do not go together', '--deny discards the changes; --branch pushes them under another branch');
  if (options.branch !== undefined && !BRANCH_NAME_PATTERN.test(options.branch))
    throw new AspError('BAD_INPUT', `--branch "${options.branch}" ${BRANCH_NAME_RULE}`, 'pass a branch name such as asp/my-fix-2');
  const workspace = workspacePaths(deps.settings.workspacesRoot, taskId);
  const owner = await readOwnerFile(workspace.dir);
  if (!owner || !isDirectory(workspace.dir)) throw new AspError('NOT_FOUND', `no task ${taskId} under ${deps.settings.workspacesRoot}`, 'check the id with asp workspaces ls');
  const saved = await loadDeliveries(workspace);
  if (saved.kind === 'damaged') {
    throw new AspError(
      'BAD_INPUT',
      `the delivery plan of ${taskId} (${hostFilePath(workspace, 'delivery')}) is damaged: ${saved.reason}; nothing was pushed`,
      'asp approve acts only on a plan asp wrote itself: run the task again',
    );
  }
  if (saved.kind === 'none') throw new AspError('BAD_INPUT', `task ${taskId} is not waiting for approval`, 'only tasks run with --hitl (or whose push failed) can be approved');
  const entries = saved.entries;
  const open = entries.filter(isOpen);
  if (!open.length) throw new AspError('BAD_INPUT', `task ${taskId} was ${entries[0]?.outcome.hitlStatus ?? 'decided'} already`, 'nothing is left to decide');
  // --branch names where a push goes: a task that was never to be pushed (--hitl alone) has none to rename.
  if (options.branch !== undefined && !open.some((entry) => entry.plan.push)) {
    throw new AspError('BAD_INPUT', `--branch given, but task ${taskId} pushes nothing (it was run without --push or --pr)`, 'leave out --branch: asp approve records the decision');
  }
  // Denying needs no clone: it discards what is pending, also after asp reap --all released the clone.
  const gone = options.deny ? undefined : open.find((entry) => !isDirectory(entry.repoDir));
  if (gone) throw new AspError('NOT_FOUND', `the clone of ${taskId} is gone (${gone.repoDir})`, 'run the task again, or asp approve --deny to close it');
  const document = await readTrace(workspace);

  const tracePath = userCopyPath(workspace, 'trace');
  const published = { delivery: 'local' as const, tracePath };
  const redone = options.deny
    ? open.map((entry) => ({ ...entry, outcome: denied(options.comment) }))
    : await deliverAll(
        open.map((entry) => (options.branch ? { ...entry, plan: { ...entry.plan, change: { ...entry.plan.change, branch: options.branch } } } : entry)),
        'approve',
        (repoDir) => deliveryContext(deps.settings, repoDir, deps.log, document, published),
        options.comment,
      );
  // Entries delivered before (a multi-repo task whose other pushes went through) keep their outcome.
  const updated: DeliveryEntry[] = entries.map((entry) => redone.find((done) => done.repo === entry.repo) ?? entry);
  const outcomes = updated.map((entry) => entry.outcome);
  recordDelivery(document, entries[0]?.plan.hitl ?? false, outcomes);
  await new TracePublication(document, {
    settings: deps.settings,
    mode: options.traceMode,
    artifactsDir: workspace.artifactsDir,
    stateDir: workspace.stateDir,
    log: deps.log,
    warn: deps.warn,
  }).publish();
  await saveDeliveries(workspace, updated);
  // What this decision did: a deny reports the denial, not an earlier push of another repository of the task.
  const delivery = options.deny ? (redone[0]?.outcome ?? denied(options.comment)) : (outcomes.find((outcome) => outcome.error) ?? outcomes[0] ?? denied(options.comment));
  const status = delivery.error ? 'failed' : options.deny ? 'rejected' : 'passed';
  const kept = Boolean(delivery.error);
  if (!kept) {
    for (const entry of updated) await removePath(entry.repoDir);
    await removePath(path.join(workspace.dir, 'repos'));
  }
  // The task passed before it waited at the gate: the decision takes it from there, by the run's own rule.
  await rewriteResultFile(workspace, (saved) => withDelivery({ ...saved, status: 'passed', exitCode: 0, error: undefined }, delivery, kept), deps.warn);
  await updateOwnerFile(workspace.dir, owner, { status });
  return { taskId, status, delivery, kept, tracePath, ...(delivery.error ? { error: delivery.error } : {}) };
}

function denied(comment: string | undefined): DeliveryOutcome {
  return { hitlStatus: 'rejected', decidedBy: os.userInfo().username, decidedAt: new Date().toISOString(), ...(comment ? { comment } : {}) };
}

/** The trace's master copy in `.asp-host/`: the decision goes into it, so it must be asp's own and intact. */
async function readTrace(workspace: HostWorkspace) {
  const file = hostFilePath(workspace, 'trace');
  try {
    const content = await readHostFile(workspace, 'trace');
    if (content === undefined) throw new Error('it is missing');
    const document = parseTraceDocument(content);
    if (document.trace.name !== workspace.taskId) throw new Error(`it is the trace of ${document.trace.name}`);
    return document;
  } catch (error) {
    throw new AspError(
      'BAD_INPUT',
      `the trace of ${workspace.taskId} (${file}) cannot be used: ${errorMessage(error)}; nothing was pushed`,
      "the decision is recorded in the task's trace: run the task again",
    );
  }
}

/** A real directory, not a link to one: the clone asp made, where asp made it. */
function isDirectory(target: string): boolean {
  try {
    return lstatSync(target).isDirectory();
  } catch {
    return false;
  }
}
