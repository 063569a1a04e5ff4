import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { AspError, errorMessage } from '../../core/asp-error.js';
import { resolvePipeline, type ResolvedStep } from '../../config/pipeline.js';
import { packForSandbox } from '../../workspace/workspace-tar.js';
import { EGRESS_PROXY_PORT, type SandboxTask } from '../../protocol/messages.js';
import { SECRET_NAME } from '../../protocol/secret-masker.js';
import { hostFilePath, taskTextEntry, taskTextFile, writeHostFile } from '../../workspace/host-state.js';
import { MODEL_ENDPOINT_PORT, type TaskGateway } from '../task-gateway.js';
import { feedSandbox, withBudget } from '../workspace-feed.js';
import type { ClaimedTask } from './claim-workspace.js';
import type { ClonedRepos } from './clone-repos.js';
import { noCheckSteps, type TaskPlan } from './resolve-task.js';

export interface PreparedFeed {
  /** What the runner is told (also `.asp/task.json`). */
  sandboxTask: SandboxTask;
  steps: ResolvedStep[];
  /** The clean-room check's steps; empty when the task has none. */
  checkSteps: ResolvedStep[];
  /** Writes the task and the workspace tar on the runner's stdin, into its volume (host-messages.ts). */
  feed: (stdin: Writable) => Promise<void>;
}

/**
 * The pipeline (from the flags, a --pipeline file, or the clone's own asp.pipeline.json), the task the runner is
 * given, and the feed that carries it and the workspace in. The task text goes in the tar for $ASP_TASK_FILE, so
 * the runner need not write it.
 */
export async function prepareFeed(plan: TaskPlan, task: ClaimedTask, cloned: ClonedRepos, deps: { cwd: string; gateway: TaskGateway | undefined }): Promise<PreparedFeed> {
  const { spec } = plan;
  const { workspace } = task;
  const pipeline = await resolvePipeline(spec, workspace.repoDir, deps.cwd);
  if (plan.checkDir && !pipeline.check.length) throw noCheckSteps();
  const { extras } = cloned;
  const sandboxTask: SandboxTask = {
    taskId: task.taskId,
    task: spec.task,
    steps: pipeline.steps,
    deadlineAt: plan.startedAt.getTime() + spec.limits.timeout,
    outputCapBytes: spec.outputCap,
    diskLimitBytes: spec.limits.disk,
    baseCommit: cloned.commit,
    branch: task.branch,
    secretEnv: Object.keys(plan.sandboxEnv).filter((name) => SECRET_NAME.test(name)),
    ...(extras.length ? { repos: extras.map((extra) => ({ name: extra.name, baseCommit: extra.commit })) } : {}),
    ...(deps.gateway ? { modelGateway: { port: MODEL_ENDPOINT_PORT, model: deps.gateway.provider.model } } : {}),
    ...(spec.network?.allow.length ? { egress: { port: EGRESS_PROXY_PORT } } : {}),
  };
  await writeHostFile(workspace, 'task', JSON.stringify(sandboxTask, null, 2) + '\n');
  await writeFile(taskTextFile(workspace), spec.task);
  const entries = ['repo', { from: path.relative(workspace.dir, hostFilePath(workspace, 'task')), as: '.asp/task.json' }, taskTextEntry(workspace), ...(extras.length ? ['repos'] : [])];
  const feed = (stdin: Writable) =>
    task.trace.phase('volume-fill', () =>
      feedSandbox(stdin, withBudget(sandboxTask, plan.deadline), packForSandbox(workspace.dir, entries)).catch((error: unknown) => {
        throw new AspError(
          'WORKSPACE_FAILED',
          `cannot send the workspace ${workspace.dir} into the sandbox: ${errorMessage(error)}`,
          'check that the workspace directory is readable and the disk is not full',
        );
      }),
    );
  return { sandboxTask, steps: pipeline.steps, checkSteps: pipeline.check, feed };
}
