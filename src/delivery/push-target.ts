import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { AspError } from '../core/asp-error.js';
import { CREDENTIALS_HINT, hasCredentials } from '../config/repo-url.js';
import { hostGit } from '../workspace/host-git.js';

const URL_LIKE = /^(?:[a-z][a-z0-9+.-]*:\/\/|[^/\s]+@[^/\s:]+:)/i;

/** Where a task's branch is pushed, and why there (for the log). */
export interface PushTarget {
  /** What `git push` is given: a URL or an absolute path. */
  remote: string;
  /** How it was chosen: "origin of /path/clone", "--push-to", "the repository itself". */
  via: string;
}

/**
 * Where `--push` sends the branch of a task whose repository is `location` (a URL, or the absolute path of a local
 * repository). A local working clone with a remote is pushed to that remote, as `git push` run in it would be: the
 * current branch's push remote (`branch.<b>.pushRemote`, `remote.pushDefault`, `branch.<b>.remote`), else `origin`,
 * at its push URL. A bare repository, a clone with no remote, and a URL are pushed to themselves. The clone is the
 * user's own: asp reads its config file (no includes, no git command in that tree), never a tree a sandbox wrote.
 */
export async function defaultPushTarget(location: string, env: Readonly<Record<string, string | undefined>>): Promise<PushTarget> {
  const clone = workingClone(location);
  if (!clone) return { remote: location, via: 'the repository itself' };
  const config = await readConfig(clone.config, env);
  const branch = currentBranch(clone.gitDir);
  const name =
    (branch && config.get(`branch.${branch}.pushremote`)) ||
    config.get('remote.pushdefault') ||
    (branch && config.get(`branch.${branch}.remote`)) ||
    (remoteUrl(config, 'origin') ? 'origin' : undefined);
  const url = name && name !== '.' ? remoteUrl(config, name) : undefined;
  if (!name || !url) return { remote: location, via: 'the repository itself (it has no remote)' };
  return { remote: withoutCredentials(absolute(url, location)), via: `${name} of ${location}` };
}

/**
 * `--push-to REMOTE|URL|PATH`: a remote of the local clone `--repo` names, or a URL, or the path of a repository.
 * Bad input (exit 2) when it is none of them, or holds credentials.
 */
export async function explicitPushTarget(pushTo: string, location: string, cwd: string, env: Readonly<Record<string, string | undefined>>): Promise<PushTarget> {
  if (!pushTo.trim() || pushTo.startsWith('-') || /[\r\n\0]/.test(pushTo))
    throw new AspError('BAD_INPUT', `--push-to ${JSON.stringify(pushTo)} is not a remote, a URL or a path`, 'give it a remote of the --repo clone (origin), a git URL or the path of a repository');
  if (URL_LIKE.test(pushTo)) {
    if (hasCredentials(pushTo)) throw new AspError('BAD_INPUT', 'the --push-to URL contains credentials', CREDENTIALS_HINT);
    return { remote: pushTo, via: '--push-to' };
  }
  const clone = workingClone(location);
  const config = clone ? await readConfig(clone.config, env) : new Map<string, string>();
  const named = remoteUrl(config, pushTo);
  if (named) return { remote: withoutCredentials(absolute(named, location)), via: `--push-to ${pushTo} (a remote of ${location})` };
  if (pushTo.includes('/') || pushTo.startsWith('.')) {
    const target = path.resolve(cwd, pushTo);
    if (!existsSync(target) || !statSync(target).isDirectory())
      throw new AspError('BAD_INPUT', `--push-to ${pushTo}: no such directory ${target}`, 'give it the path of a git repository, a git URL, or a remote of the --repo clone');
    return { remote: target, via: '--push-to' };
  }
  const remotes = remoteNames(config);
  const known = remotes.length ? `its remotes: ${remotes.join(', ')}` : 'it has no remotes';
  const what = clone ? `${location} has no remote named ${pushTo} (${known})` : `--push-to ${pushTo} names a remote, and --repo ${location} is not a local working clone`;
  throw new AspError('BAD_INPUT', `--push-to: ${what}`, 'give it a remote of the --repo clone, a git URL or the path of a repository');
}

/** A local repository with a work tree (`<dir>/.git/` a directory): its config and git dir. Undefined for a URL or a bare one. */
function workingClone(location: string): { gitDir: string; config: string } | undefined {
  if (URL_LIKE.test(location) || !path.isAbsolute(location)) return undefined;
  const gitDir = path.join(location, '.git');
  try {
    if (!statSync(gitDir).isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  return { gitDir, config: path.join(gitDir, 'config') };
}

/** The clone's own config file, keys lower-cased as git compares them (the subsection, a remote's name, kept). */
async function readConfig(file: string, env: Readonly<Record<string, string | undefined>>): Promise<Map<string, string>> {
  if (!existsSync(file)) return new Map();
  // --file: that file only, no includes, nothing run; -z: values with any characters come back whole.
  // Run from /, not from wherever asp was started (often the clone itself): git looks into no repository at all.
  const listed = await hostGit({ env, baseDir: '/' }).raw(['config', '--file', file, '--no-includes', '-z', '--list']);
  const entries = listed
    .split('\0')
    .filter(Boolean)
    .map((entry): [string, string] => {
      const newline = entry.indexOf('\n');
      const key = newline < 0 ? entry : entry.slice(0, newline);
      return [normalKey(key), newline < 0 ? '' : entry.slice(newline + 1)];
    });
  return new Map(entries);
}

/** git keys are `section.subsection.name`: section and name are case-insensitive, the subsection is not. */
function normalKey(key: string): string {
  const first = key.indexOf('.');
  const last = key.lastIndexOf('.');
  if (first < 0) return key.toLowerCase();
  if (first === last) return key.toLowerCase();
  return `${key.slice(0, first).toLowerCase()}.${key.slice(first + 1, last)}.${key.slice(last + 1).toLowerCase()}`;
}

function remoteUrl(config: Map<string, string>, name: string): string | undefined {
  return config.get(`remote.${name}.pushurl`) || config.get(`remote.${name}.url`) || undefined;
}

function remoteNames(config: Map<string, string>): string[] {
  const names = [...config.keys()].map((key) => /^remote\.(.+)\.url$/.exec(key)?.[1]).filter((name): name is string => Boolean(name));
  return [...new Set(names)].sort();
}

function currentBranch(gitDir: string): string | undefined {
  try {
    return /^ref: refs\/heads\/(.+)$/.exec(readFileSync(path.join(gitDir, 'HEAD'), 'utf8').trim())?.[1];
  } catch {
    return undefined;
  }
}

/** A remote URL that is a relative path is relative to the clone. */
function absolute(url: string, location: string): string {
  return URL_LIKE.test(url) || path.isAbsolute(url) ? url : path.resolve(location, url);
}

/**
 * A remote URL in the user's config may hold a token: asp pushes without it (a credential helper, an SSH agent or
 * GITHUB_TOKEN does the rest), so it never lands in asp's files, traces or messages.
 */
function withoutCredentials(url: string): string {
  if (!hasCredentials(url)) return url;
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@\s]*@/i, '$1');
}
