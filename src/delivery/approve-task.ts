import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AspError, errorMessage } from '../asp-error.js';
import type { Settings } from '../config/settings.js';
import { TASK_ID_PATTERN } from '../config/task-spec.js';
import type { Log } from '../supervisor/log.js';
import { recordDelivery } from '../tracing/hitl-trace.js';
import { publishTrace } from '../tracing/publish-trace.js';
import type { TraceMode } from '../tracing/trace-mode.js';
import { parseTraceDocument } from '../tracing/trace-schema.js';
import { readOwnerFile, removePath, updateOwnerFile, workspacePaths } from '../workspace/host-workspace.js';
import { deliverAll } from './deliver-changes.js';
import { deliveryContext } from './delivery-context.js';
import { loadDeliveries, pending, saveDeliveries, type DeliveryOutcome } from './delivery-plan.js';

export interface ApproveResult {
  taskId: string;
  delivery: DeliveryOutcome;
  tracePath: string;
}

/**
 * `asp approve <task> [--deny]`: finishes a task that waits at the HITL gate (or whose push failed):
 * approve pushes and opens the PR from the kept clone; deny discards the changes. Either way the decision,
 * who, when and the comment go into the trace, which is published again (to the outbox if Langfuse is away).
 */
export async function approveTask(
  taskId: string,
  options: { deny: boolean; comment?: string | undefined; traceMode?: TraceMode | undefined },
  deps: { settings: Settings; log: Log; warn: (message: string) => void },
): Promise<ApproveResult> {
  if (!TASK_ID_PATTERN.test(taskId)) throw new AspError('BAD_INPUT', `"${taskId}" is not a task id`, 'pass the id asp run printed (asp workspaces ls lists them)');
  const workspace = workspacePaths(deps.settings.workspacesRoot, taskId);
  if (!existsSync(workspace.dir)) throw new AspError('NOT_FOUND', `no task ${taskId} under ${deps.settings.workspacesRoot}`, 'check the id with asp workspaces ls');
  const saved = await loadDeliveries(workspace.artifactsDir);
  if (!saved) throw new AspError('BAD_INPUT', `task ${taskId} is not waiting for approval`, 'only tasks run with --hitl (or whose push failed) can be approved');
  if (!pending(saved)) throw new AspError('BAD_INPUT', `task ${taskId} was ${saved[0]?.outcome.hitlStatus} already`, 'nothing is left to decide');
  const open = saved.filter((entry) => entry.outcome.hitlStatus === 'awaiting_approval' || entry.outcome.hitlStatus === 'deferred' || entry.outcome.error);
  const gone = open.find((entry) => !existsSync(entry.repoDir));
  if (gone) throw new AspError('NOT_FOUND', `the clone of ${taskId} is gone (${gone.repoDir})`, 'run the task again');

  const tracePath = path.join(workspace.artifactsDir, 'trace.json');
  let document;
  try {
    document = parseTraceDocument(await readFile(tracePath, 'utf8'));
  } catch (error) {
    throw new AspError('BAD_INPUT', `the trace of ${taskId} cannot be read: ${errorMessage(error)}`, 'the decision needs the task\'s .asp/trace.json');
  }
  const published = { delivery: 'local' as const, tracePath };
  const decision = options.deny ? 'deny' : 'approve';
  const redone = await deliverAll(open, decision, (repoDir) => deliveryContext(deps.settings, repoDir, deps.log, document, published), options.comment);
  // Entries delivered before (a multi-repo task whose other pushes went through) keep their outcome.
  const entries = saved.map((entry) => redone.find((done) => done.repoDir === entry.repoDir) ?? entry);
  const outcomes = entries.map((entry) => entry.outcome);
  recordDelivery(document, saved[0]?.plan.hitl ?? false, outcomes);
  await publishTrace(document, { settings: deps.settings, mode: options.traceMode, artifactsDir: workspace.artifactsDir, log: deps.log, warn: deps.warn });
  await saveDeliveries(workspace.artifactsDir, entries);
  const delivery = outcomes.find((outcome) => outcome.error) ?? (outcomes[0] as DeliveryOutcome);
  await updateResult(workspace.artifactsDir, delivery);
  const owner = await readOwnerFile(workspace.dir);
  if (delivery.error) {
    // The work stays for another try, exactly as it was.
    throw new AspError('PUSH_REJECTED', delivery.error, `fix it, then asp approve ${taskId} again`);
  }
  if (owner) await updateOwnerFile(workspace.dir, owner, { status: 'passed' });
  for (const entry of entries) await removePath(entry.repoDir);
  return { taskId, delivery, tracePath };
}

async function updateResult(artifactsDir: string, delivery: DeliveryOutcome): Promise<void> {
  const file = path.join(artifactsDir, 'result.json');
  try {
    const result = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    result.delivery = delivery;
    if (!delivery.error) result.status = 'passed';
    await writeFile(file, JSON.stringify(result, null, 2) + '\n');
  } catch {
    /* result.json is a convenience copy; the trace holds the decision */
  }
}
