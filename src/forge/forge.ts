/**
 * The code host behind pull requests. GitHub implements it (github-forge.ts); GitLab or Gitea can follow
 * without the supervisor changing. Everything here runs on the host with the host's token: the sandbox never
 * sees one.
 */
export interface ForgeRepo {
  owner: string;
  name: string;
  defaultBranch: string;
  /** Whether the token may push to this repository; when not, asp pushes to a fork. */
  canPush: boolean;
  /** Where to push: the forge's clone URL for the repository. */
  pushUrl: string;
}

export interface PullRequestInput {
  /** The repository the pull request goes to. */
  target: ForgeRepo;
  /** The branch with the changes, and who owns it (the target's owner, or a fork's). */
  head: { owner: string; branch: string };
  base: string;
  title: string;
  body: string;
  draft: boolean;
}

export interface PullRequest {
  url: string;
  number: number;
}

export interface Forge {
  readonly name: string;
  /** Describes the repository a remote URL points at. */
  repository(remoteUrl: string): Promise<ForgeRepo>;
  /** The token user's fork of `repo`, created when it does not exist yet. */
  fork(repo: ForgeRepo): Promise<ForgeRepo>;
  openPullRequest(input: PullRequestInput): Promise<PullRequest>;
  /** Replaces a pull request's body (the PRs of a multi-repo task link each other once all exist). */
  updatePullRequestBody(repo: { owner: string; name: string }, number: number, body: string): Promise<void>;
}

/** owner/name from any URL form a remote takes: https://host/o/n(.git), git@host:o/n.git, ssh://host/o/n, git://host/o/n. */
export function ownerAndName(remoteUrl: string): { owner: string; name: string } | undefined {
  const path = remoteUrl.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]+\//i, '').replace(/^[^/@\s]+@[^:/\s]+:/, '');
  const parts = path
    .replace(/\.git$/, '')
    .replace(/\/+$/, '')
    .split('/')
    .filter(Boolean);
  const [owner, name] = parts.slice(-2);
  if (owner === undefined || name === undefined) return undefined;
  return { owner, name };
}

/** A URL as it may be shown: without user and password. */
export function redact(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, '$1***@');
}
