import path from 'node:path';
import { githubToken, type Settings } from '../../config/settings.js';
import { cloneExtraRepos, type ExtraRepo } from '../../workspace/extra-repos.js';
import { RepoMirrors } from '../../workspace/repo-mirror.js';
import { cloneRepository } from '../../workspace/repository.js';
import type { ClaimedTask } from './claim-workspace.js';
import type { TaskPlan } from './resolve-task.js';

export interface ClonedRepos {
  /** The commit the task starts from. */
  commit: string;
  /** The branch the pull request goes back to; null for a tag or a bare commit (the forge's default then). */
  baseBranch: string | null;
  /** The other repositories of a multi-repo task, cloned under `repos/<name>`. */
  extras: ExtraRepo[];
}

/**
 * The host's clones, in the claimed dir: the task's repository at `repo/`, the others at `repos/<name>`. A remote
 * repository is fetched into a mirror (incrementally, once per batch) and cloned from there, unless the clone is
 * shaped (shallow or partial): then it comes straight from the origin.
 */
export async function cloneRepos(plan: TaskPlan, task: ClaimedTask, deps: { settings: Settings; mirrors?: RepoMirrors | undefined }): Promise<ClonedRepos> {
  const { spec } = plan;
  const { settings } = deps;
  const token = githubToken(settings);
  const shaped = spec.clone?.depth !== undefined || spec.clone?.filter !== undefined;
  const mirrors = deps.mirrors ?? new RepoMirrors(path.join(settings.home, 'mirrors'), settings.hostEnv, token);
  const from = shaped ? plan.source : await mirrors.resolve(plan.source);
  const [primary, extras] = await Promise.all([
    cloneRepository(from, task.workspace.repoDir, spec.ref, settings.hostEnv, { ...spec.clone, token }),
    cloneExtraRepos(plan.extraSources, task.workspace.dir, { mirrors, env: settings.hostEnv, token }),
  ]);
  task.trace.setSource(primary.commit, primary.ref);
  const detached = /^[0-9a-f]{40,64}$/.test(primary.ref) || primary.ref === 'HEAD';
  return { commit: primary.commit, baseBranch: detached ? null : primary.ref, extras };
}
