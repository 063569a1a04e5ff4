import type { Settings } from '../config/settings.js';
import type { Log } from '../core/log.js';
import type { Decision } from '../core/records.js';
import { finishTask } from '../supervisor/phases/finish-task.js';
import type { TaskResult, TaskRun } from '../supervisor/task-result.js';
import { recordDelivery } from '../tracing/hitl-trace.js';
import { errorMessage } from '../core/asp-error.js';
import { deliverAll } from './deliver-changes.js';
import { defaultPushTarget, type PushTarget } from './push-target.js';
import { deliveryContext } from './delivery-context.js';
import { pending, saveDeliveries, type DeliveryEntry, type DeliveryPlan, type GateSummary } from './delivery-plan.js';

export interface DeliverDeps {
  settings: Settings;
  log: Log;
  /** The HITL gate's answer given up front (--approve / --deny). */
  decision?: Decision | undefined;
  /** Asks a person at the gate (a TTY prompt); absent when nobody can be asked. */
  ask?: ((summary: GateSummary) => Promise<Decision>) | undefined;
  /** The run's interrupt (Ctrl-C): once it fired, nothing is pushed; the work waits for `asp approve`. */
  signal?: AbortSignal | undefined;
  /** `--push-to`, resolved: where the task's own repository's branch goes instead of defaultPushTarget's choice. */
  pushTo?: PushTarget | undefined;
}

/**
 * Delivery, after the run: the HITL gate, then push and pull request, host side with host credentials. The task's
 * own repository first, then the others of a multi-repo task: one gate, one decision for all. The decision goes
 * into the trace, which is published again (one publish per state), and what still waits is saved for
 * `asp approve`. A run that asked for no delivery (or did not pass) is returned as it is: it is finished already.
 */
export async function deliverTask(run: TaskRun, deps: DeliverDeps): Promise<TaskResult> {
  if (!run.awaitingDelivery) return run.result;
  const { spec, result } = run;
  const { taskId } = result;
  const warnings: string[] = [];
  // Chosen once, here, and saved in the plan: asp approve pushes where this run said it would.
  const remoteOf = async (deliverable: TaskRun['deliverables'][number]): Promise<string> => {
    if (!spec.push && !spec.pr) return deliverable.remote;
    if (deliverable.repo === null && deps.pushTo) return deps.pushTo.remote;
    try {
      return (await defaultPushTarget(deliverable.remote, deps.settings.hostEnv)).remote;
    } catch (error) {
      warnings.push(`could not read the remotes of ${deliverable.remote} (${errorMessage(error)}): pushing to it`);
      return deliverable.remote;
    }
  };
  const plan = async (deliverable: TaskRun['deliverables'][number]): Promise<DeliveryPlan> => ({
    taskId,
    task: spec.task,
    remote: await remoteOf(deliverable),
    baseBranch: deliverable.baseBranch,
    push: spec.push || spec.pr,
    pr: spec.pr,
    draft: spec.draft,
    hitl: spec.hitl,
    change: deliverable.change,
  });
  const wanted: Array<{ repo: string | null; plan: DeliveryPlan; repoDir: string }> = [];
  for (const deliverable of run.deliverables) wanted.push({ repo: deliverable.repo, plan: await plan(deliverable), repoDir: deliverable.repoDir });
  const first = wanted[0];
  if (!first) {
    deps.log.info({ taskId }, 'no changes: nothing to review, push or open a pull request for');
    return finishTask(run);
  }
  const { document } = run.trace;
  const published = run.trace.published ?? { delivery: 'local' as const, tracePath: result.tracePath };
  // An interrupt after the steps passed (during the copy-out, the trace, the gate) still stops what would leave
  // the machine: the changes are kept, deferred, for `asp approve` to push.
  const deliver = async (): Promise<DeliveryEntry[]> => {
    if (deps.signal?.aborted) return wanted.map((entry) => ({ ...entry, outcome: { hitlStatus: 'deferred' } }));
    const decision = deps.decision ?? (spec.hitl && deps.ask ? await deps.ask({ taskId, change: first.plan.change, document }) : undefined);
    if (deps.signal?.aborted) return wanted.map((entry) => ({ ...entry, outcome: { hitlStatus: 'deferred' } }));
    return deliverAll(wanted, decision, (repoDir) => deliveryContext(deps.settings, repoDir, deps.log, document, published));
  };
  const deliveries = await deliver();
  if (deps.signal?.aborted && deliveries.every((entry) => entry.outcome.hitlStatus === 'deferred')) {
    deps.log.warn({ taskId }, `interrupted before delivery: nothing was pushed; asp approve ${taskId} delivers the changes (or --deny discards them)`);
  }
  const outcomes = deliveries.map((entry) => entry.outcome);
  const delivery = outcomes.find((entry) => entry.error) ?? outcomes[0] ?? null;
  const warn = (message: string) => {
    result.warnings.push(message);
    deps.log.warn({ taskId }, message);
  };
  for (const message of warnings) warn(message);
  if (delivery?.error) warn(`delivery failed: ${delivery.error}`);
  recordDelivery(document, spec.hitl, outcomes);
  const waiting = pending(deliveries);
  if (waiting) {
    await saveDeliveries(run.workspace, deliveries);
    deps.log.info(
      { taskId },
      delivery?.error
        ? `the work is kept in ${run.workspace.dir}: asp approve ${taskId} tries again (--branch B pushes under another branch, --deny discards it)`
        : `awaiting approval: asp approve ${taskId} (or --deny)`,
    );
  }
  await run.trace.publish();
  return finishTask(run, { delivery, pending: waiting });
}
