import type { Sandbox, SandboxBackend } from '../../backend/sandbox-backend.js';
import { checkLimitsFit } from '../../backend/limits-fit.js';
import { ownershipLabels } from '../../backend/ownership-labels.js';
import { checkRuntime } from '../../backend/sandbox-policy.js';
import type { CleanupScope } from '../../core/cleanup-stack.js';
import type { Log } from '../../core/log.js';
import type { WarmSource } from '../../pool/warm-source.js';
import type { ClaimedTask } from './claim-workspace.js';
import type { TaskPlan } from './resolve-task.js';

export interface SandboxUp {
  image: string;
  sandbox: Sandbox;
}

/**
 * The engine checked against the task (its limits fit the machine, its runtime is there and hardened), the image
 * ready, and the sandbox made and verified. Its removal is on the stack from the moment it exists.
 */
export async function bringSandboxUp(plan: TaskPlan, task: ClaimedTask, deps: { backend: SandboxBackend; log: Log; warm?: WarmSource | undefined }, stack: CleanupScope): Promise<SandboxUp> {
  const { spec } = plan;
  const { backend, log } = deps;
  const info = await backend.describe();
  checkLimitsFit(spec.limits, info);
  checkRuntime(spec.runtime, info);
  const prepared = await task.trace.phase('image', () =>
    backend.prepareImage({
      image: spec.image,
      onBuildStart: (tag) => log.info({ image: tag }, `building the sandbox image ${tag} (first run, or asp changed); this takes a minute`),
      onProgress: (line) => log.debug({}, line),
    }),
  );
  const image = prepared.ref;
  task.trace.setImage(image, prepared.id);
  // A warm sandbox of this very image and these limits (a pool's, the batch's next), when there is one to take.
  const offer = await deps.warm?.({ image, imageId: prepared.id, limits: spec.limits, runtime: spec.runtime });
  if (offer) {
    const claimed = await task.trace.phase('claim', () => offer.claim(stack, { labels: ownershipLabels(task.owner), id: `${task.taskId}-${task.runId}` }));
    if (claimed) {
      log.debug({ taskId: task.taskId, sandbox: claimed.id }, `claimed a warm sandbox from ${offer.from}`);
      return { image, sandbox: claimed };
    }
    log.debug({ taskId: task.taskId }, `${offer.from} had no ready sandbox: making one`);
  }
  const sandbox = await task.trace.phase('container-create', () =>
    backend.createSandbox(
      { taskId: task.taskId, runId: task.runId, role: 'task', image, labels: ownershipLabels(task.owner), limits: spec.limits, env: plan.sandboxEnv, runtime: spec.runtime, checkDir: false },
      stack,
    ),
  );
  return { image, sandbox };
}
