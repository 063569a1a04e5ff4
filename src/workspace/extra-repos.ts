import path from 'node:path';
import type { TaskSpec } from '../config/task-spec.js';
import { fetchChanges, type ChangeReport } from './change-bundle.js';
import type { RepoMirrors } from './repo-mirror.js';
import { cloneRepository, resolveRepoSource, type RepoSource } from './repository.js';

/** One more repository of a multi-repo task, cloned by the host at `<task dir>/repos/<name>`. */
export interface ExtraRepo {
  name: string;
  source: RepoSource;
  dir: string;
  commit: string;
  /** The branch it started from (the PR's base), or null for a tag or a bare commit. */
  baseBranch: string | null;
}

export interface ExtraChange {
  name: string;
  repo: string;
  change: ChangeReport | null;
  /** Why the changes were not accepted, when they were not. */
  rejected?: string;
}

/** Resolves the extra repositories up front, so a missing one fails before anything is made. */
export function resolveExtraRepos(spec: TaskSpec, cwd: string): Array<{ name: string; source: RepoSource; ref: string | undefined }> {
  return (spec.repos ?? []).map((entry) => ({ name: entry.name, source: resolveRepoSource(entry.repo, cwd), ref: entry.ref }));
}

/** Clones them side by side, each through the mirror cache like the task's own repository. */
export async function cloneExtraRepos(
  extras: Array<{ name: string; source: RepoSource; ref: string | undefined }>,
  taskDir: string,
  options: { mirrors: RepoMirrors; env: Readonly<Record<string, string | undefined>>; token?: { value: string; host: string } | undefined },
): Promise<ExtraRepo[]> {
  return Promise.all(
    extras.map(async (extra) => {
      const dir = path.join(taskDir, 'repos', extra.name);
      const cloned = await cloneRepository(await options.mirrors.resolve(extra.source), dir, extra.ref, options.env, { token: options.token });
      const baseBranch = /^[0-9a-f]{40,64}$/.test(cloned.ref) || cloned.ref === 'HEAD' ? null : cloned.ref;
      return { name: extra.name, source: extra.source, dir, commit: cloned.commit, baseBranch };
    }),
  );
}

/** Fetches each repository's bundle into its own clean clone, checked as for the task's own repository. */
export async function fetchExtraChanges(extras: ExtraRepo[], artifactsDir: string, branch: string, env: Readonly<Record<string, string | undefined>>): Promise<ExtraChange[]> {
  const changes: ExtraChange[] = [];
  for (const extra of extras) {
    const fetched = await fetchChanges(extra.dir, artifactsDir, { base: extra.commit, branch, env, name: extra.name });
    changes.push({
      name: extra.name,
      repo: extra.source.display,
      change: fetched.kind === 'fetched' ? fetched.change : null,
      ...(fetched.kind === 'rejected' ? { rejected: fetched.reason } : {}),
    });
  }
  return changes;
}
