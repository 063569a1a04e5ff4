import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SimpleGit } from 'simple-git';
import { AspError, errorMessage } from '../core/asp-error.js';
import { CREDENTIALS_HINT, hasCredentials } from '../config/repo-url.js';
import { hostGit, tokenConfig } from './host-git.js';
import { assertSelfContained } from './self-contained-repo.js';

export interface RepoSource {
  kind: 'local' | 'remote';
  /** What git clones from: an absolute path or the URL as given. */
  location: string;
  /** How the trace names it, without credentials. */
  display: string;
}

const URL_LIKE = /^(?:[a-z][a-z0-9+.-]*:\/\/|[^/\s]+@[^/\s:]+:)/i;

/**
 * Decides what `--repo` names. A local path must be a directory and a self-contained repository (no alternates,
 * linked refs or commondir: see self-contained-repo.ts), as must the path of a file:// URL; a URL must not carry
 * credentials.
 */
export function resolveRepoSource(repo: string, cwd: string): RepoSource {
  if (URL_LIKE.test(repo)) {
    // Never echo the URL here: the point is that it holds a secret.
    if (hasCredentials(repo)) throw new AspError('BAD_INPUT', 'the repository URL contains credentials', CREDENTIALS_HINT);
    if (/^(?:ext|fd)::/i.test(repo)) throw new AspError('BAD_INPUT', `unsupported repository URL ${repo}`, 'use https://, ssh://, git@host:path or a local path');
    // file:// is a local repository in a URL's clothes: upload-pack serves its alternates just the same.
    const local = fileUrlPath(repo);
    if (local) assertSelfContained(local, repo);
    return { kind: 'remote', location: repo, display: repo };
  }
  const location = path.resolve(cwd, repo);
  if (!existsSync(location)) {
    throw new AspError('REPO_NOT_FOUND', `repository ${repo} not found: no such directory ${location}`, 'pass --repo a git URL or the path of a local git repository');
  }
  if (!statSync(location).isDirectory()) {
    throw new AspError('REPO_NOT_FOUND', `repository ${repo} is not a directory`, 'pass --repo the path of a local git repository');
  }
  assertSelfContained(location, location);
  return { kind: 'local', location, display: location };
}

function fileUrlPath(repo: string): string | undefined {
  if (!/^file:\/\//i.test(repo)) return undefined;
  try {
    return fileURLToPath(repo);
  } catch {
    return undefined;
  }
}

export interface CloneResult {
  commit: string;
  /** The ref that was asked for, or the branch HEAD pointed at. */
  ref: string;
}

/**
 * Makes the host's own clean clone at `destination` and checks out `ref` (branch, tag or sha, detached;
 * default: the remote's HEAD). Hooks are off and prompts are off: a clone must never wait for a password.
 */
export interface CloneOptions {
  /** A shallow clone of this many commits (big repositories). */
  depth?: number | undefined;
  /** A partial clone: blobs (or trees too) are fetched when needed. */
  filter?: 'blob:none' | 'tree:0' | undefined;
  /** The forge token, sent only to its own host. */
  token?: { value: string; host: string } | undefined;
}

export async function cloneRepository(
  source: RepoSource,
  destination: string,
  ref: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  options: CloneOptions = {},
): Promise<CloneResult> {
  const git = (baseDir?: string): SimpleGit => hostGit({ env, ...(baseDir ? { baseDir } : {}), config: ['advice.detachedHead=false'], secretConfig: tokenConfig(source.location, options.token) });
  // git ignores --depth and --filter for a plain local path: say file:// to have them.
  const shaping = [...(options.depth ? [`--depth=${options.depth}`, '--no-single-branch'] : []), ...(options.filter ? [`--filter=${options.filter}`] : [])];
  const location = shaping.length && source.kind === 'local' ? `file://${source.location}` : source.location;
  // No --quiet anywhere: simple-git waits an extra 50 ms after any git command that prints nothing.
  // Without --ref the clone checks out the remote HEAD itself: two git processes in all, not four.
  // Checked again right before the clone: the source may have changed since the task was accepted (a batch
  // clones long after it read its list).
  if (source.kind === 'local') assertSelfContained(source.location, source.display);
  try {
    await git().clone(location, destination, [...(ref ? ['--no-checkout'] : []), ...shaping]);
  } catch (error) {
    throw new AspError('REPO_NOT_FOUND', `cannot clone ${source.display}: ${firstLine(error)}`, 'check that the repository exists and that you can read it (git clone works by hand)', {
      cause: error,
    });
  }
  // Checked before the clone, and once more on what it made: a local clone copies objects/info/alternates, and a
  // repository changed between the check and the clone must not slip a borrowed object store into the sandbox.
  for (const name of ['objects/info/alternates', 'objects/info/http-alternates']) {
    if (existsSync(path.join(destination, '.git', name))) {
      throw new AspError(
        'BAD_INPUT',
        `repository ${source.display} reaches outside itself: the clone got ${name} from it`,
        'if it is your own repository, make a self-contained copy first; otherwise do not run it',
      );
    }
  }
  const repo = git(destination);
  if (!ref) {
    // A fresh clone's HEAD is read from its files (one git process less per task); anything unusual asks git.
    const [commit, branch] = (await readHead(destination)) ?? (await repo.raw(['rev-parse', 'HEAD', '--abbrev-ref', 'HEAD']).catch(() => '')).trim().split('\n');
    if (!commit || !/^[0-9a-f]{40,64}$/.test(commit)) throw new AspError('REPO_NOT_FOUND', `${source.display} has no commits`, 'commit something first');
    return { commit, ref: branch && branch !== 'HEAD' ? branch : commit };
  }
  const commit = await resolveCommit(repo, ref);
  if (!commit) throw new AspError('REPO_NOT_FOUND', `ref "${ref}" not found in ${source.display}`, 'pass --ref a branch, tag or commit that exists');
  await repo.raw(['checkout', '--detach', commit]);
  return { commit, ref };
}

/**
 * The commit and branch of HEAD in a clone asp just made, read from .git/HEAD and the branch's loose ref or
 * packed-refs; undefined for anything else (a detached HEAD, a reftable repository, a missing ref), and git decides.
 */
export async function readHead(repoDir: string): Promise<[string, string] | undefined> {
  const gitDir = path.join(repoDir, '.git');
  const head = (await readFile(path.join(gitDir, 'HEAD'), 'utf8').catch(() => '')).trim();
  const ref = /^ref: (refs\/heads\/[^\s]+)$/.exec(head)?.[1];
  if (!ref || ref.split('/').some((part) => part === '..' || part === '')) return undefined;
  const loose = (await readFile(path.join(gitDir, ref), 'utf8').catch(() => '')).trim();
  const packed = loose ? undefined : (await readFile(path.join(gitDir, 'packed-refs'), 'utf8').catch(() => '')).split('\n').find((line) => line.endsWith(` ${ref}`));
  const commit = loose || packed?.split(' ')[0] || '';
  return /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(commit) ? [commit, ref.slice('refs/heads/'.length)] : undefined;
}

async function resolveCommit(repo: SimpleGit, ref: string): Promise<string | undefined> {
  if (ref.startsWith('-')) return undefined;
  for (const candidate of [ref, `origin/${ref}`]) {
    const sha = await repo.raw(['rev-parse', '--verify', `${candidate}^{commit}`]).catch(() => '');
    if (/^[0-9a-f]{40,64}$/.test(sha.trim())) return sha.trim();
  }
  return undefined;
}

function firstLine(error: unknown): string {
  const lines = errorMessage(error)
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  return (lines.find((line) => /^fatal:/.test(line)) ?? lines[0] ?? 'unknown error').replace(/^fatal:\s*/, '');
}
