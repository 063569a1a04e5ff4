import { existsSync } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../core/asp-error.js';
import { CHANGE_BUNDLE, CHANGE_PATCH, CHANGES_DIR } from '../protocol/messages.js';
import { hostGit } from './host-git.js';

/** What the sandbox changed, as the host verified it in its own clean clone. */
export interface ChangeReport {
  branch: string;
  base: string;
  head: string;
  commits: number;
  filesChanged: number;
  insertions: number;
  deletions: number;
  /** `git diff --stat` of base..head, for people. */
  stat: string;
  bundle: string;
  patch: string | null;
  /** The ref in the host clone that holds the fetched commits. */
  ref: string;
}

export type ChangeOutcome = { kind: 'none' } | { kind: 'fetched'; change: ChangeReport } | { kind: 'rejected'; reason: string };

const INCOMING_REF = 'refs/asp/incoming';

/**
 * Brings the sandbox's changes into the host's clean clone the only safe way: `git fetch` from the bundle file.
 * The host never runs git in the tree the sandbox wrote (its .git/config could run code through fsmonitor,
 * hooks or filters); a bundle is data. The fetch is checked: only the task's branch, objects fsck-ed, and the
 * commits must sit on top of the base the task started from.
 */
export async function fetchChanges(
  repoDir: string,
  artifactsDir: string,
  options: { base: string; branch: string; env: Readonly<Record<string, string | undefined>>; name?: string | undefined },
): Promise<ChangeOutcome> {
  // The task's own repository has .asp/change.bundle; the others of a multi-repo task .asp/changes/<name>.bundle.
  const bundle = options.name ? path.join(artifactsDir, CHANGES_DIR, `${options.name}.bundle`) : path.join(artifactsDir, CHANGE_BUNDLE);
  const patch = options.name ? path.join(artifactsDir, CHANGES_DIR, `${options.name}.patch`) : path.join(artifactsDir, CHANGE_PATCH);
  if (!existsSync(bundle)) return { kind: 'none' };
  const git = hostGit({ env: options.env, baseDir: repoDir, config: ['fetch.fsckObjects=true', 'transfer.fsckObjects=true'] });
  const wanted = `refs/heads/${options.branch}`;
  try {
    const heads = (await git.raw(['bundle', 'list-heads', bundle])).trim().split('\n').filter(Boolean);
    const refs = heads.map((line) => line.split(' ')[1]);
    if (refs.length !== 1 || refs[0] !== wanted) return { kind: 'rejected', reason: `the bundle carries ${refs.join(', ') || 'no refs'}, not only ${wanted}` };
    await git.raw(['fetch', '--no-tags', '--no-write-fetch-head', bundle, `+${wanted}:${INCOMING_REF}`]);
    const head = (await git.raw(['rev-parse', '--verify', `${INCOMING_REF}^{commit}`])).trim();
    const onTop = await git.raw(['merge-base', '--is-ancestor', options.base, head]).then(
      () => true,
      () => false,
    );
    if (!onTop) return { kind: 'rejected', reason: `the commits do not build on the task's base ${options.base.slice(0, 12)}` };
    const commits = Number((await git.raw(['rev-list', '--count', `${options.base}..${head}`])).trim());
    const shortstat = (await git.raw(['diff', '--shortstat', options.base, head])).trim();
    const stat = (await git.raw(['diff', '--stat=100', options.base, head])).trimEnd();
    const number = (pattern: RegExp) => Number(pattern.exec(shortstat)?.[1] ?? 0);
    return {
      kind: 'fetched',
      change: {
        branch: options.branch,
        base: options.base,
        head,
        commits,
        filesChanged: number(/(\d+) files? changed/),
        insertions: number(/(\d+) insertions?/),
        deletions: number(/(\d+) deletions?/),
        stat,
        bundle,
        patch: existsSync(patch) ? patch : null,
        ref: INCOMING_REF,
      },
    };
  } catch (error) {
    return {
      kind: 'rejected',
      reason: `the bundle could not be fetched: ${
        errorMessage(error)
          .split('\n')
          .find((line) => line.trim()) ?? 'unknown error'
      }`,
    };
  }
}
