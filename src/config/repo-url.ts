/**
 * Credentials in a repository URL end up in logs, traces, error messages, `ps` and .git/config. asp refuses
 * them everywhere a task names a repository (flags, task lists), before anything runs and without echoing them.
 */

const URL_WITH_USERINFO = /^([a-z][a-z0-9+.-]*):\/\/([^/?#@\s]*)@/i;
/** Schemes where anything before the `@` can only be a secret: a bare token (`https://<token>@host`) or user:password. */
const TOKEN_SCHEMES = new Set(['http', 'https', 'ftp', 'ftps']);

/**
 * True when the URL carries a password or a token: `user:password@` in any scheme, or any userinfo at all in
 * http(s), where GitHub-style tokens travel as a bare user (`https://ghp_...@github.com/...`).
 * `ssh://git@host/...` and `git@host:path` name a user, not a secret, and pass.
 */
export function hasCredentials(repo: string): boolean {
  const match = URL_WITH_USERINFO.exec(repo.trim());
  if (!match) return false;
  const [, scheme = '', userinfo = ''] = match;
  return userinfo.includes(':') || (TOKEN_SCHEMES.has(scheme.toLowerCase()) && userinfo !== '');
}

export const CREDENTIALS_HINT = 'remove them from the URL and use a git credential helper, an SSH agent or a token variable on the host';
