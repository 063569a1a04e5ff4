import { simpleGit, type SimpleGit } from 'simple-git';

/**
 * What of the host environment host-side git sees: enough to find git, reach remotes (proxies, CA bundles,
 * an SSH agent, credential helpers through HOME/XDG config) and nothing else. Passing the whole environment
 * would also be refused by simple-git for variables such as EDITOR or GIT_ASKPASS that can run programs.
 */
const PASSED = /^(PATH|HOME|USER|LOGNAME|LANG|LC_[A-Z]+|TMPDIR|XDG_CONFIG_HOME|SSH_AUTH_SOCK|SSL_CERT_FILE|SSL_CERT_DIR|GIT_SSL_CAINFO|(HTTPS?|NO|ALL)_PROXY|(https?|no|all)_proxy)$/;

export function hostGitEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const passed = Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && PASSED.test(entry[0]));
  // Never wait for a password: a clone that needs one fails with a message instead of hanging a batch.
  return { ...Object.fromEntries(passed), GIT_TERMINAL_PROMPT: '0' };
}

/**
 * Host-side git, always with hooks off: the host runs git only in trees it made itself, and even there no hook runs.
 * `secretConfig` travels in GIT_CONFIG_* environment variables, not `-c` arguments, so a token in it never shows in
 * the process list (`ps`) the way a command line does.
 */
export function hostGit(options: { env: Readonly<Record<string, string | undefined>>; baseDir?: string; timeoutMs?: number; config?: string[]; secretConfig?: Array<[string, string]> }): SimpleGit {
  const secret = options.secretConfig ?? [];
  const secretEnv: Record<string, string> = secret.length
    ? Object.fromEntries([
        ['GIT_CONFIG_COUNT', String(secret.length)],
        ...secret.flatMap(([key, value], index): Array<[string, string]> => [
          [`GIT_CONFIG_KEY_${index}`, key],
          [`GIT_CONFIG_VALUE_${index}`, value],
        ]),
      ])
    : {};
  return simpleGit({
    ...(options.baseDir ? { baseDir: options.baseDir } : {}),
    unsafe: { allowUnsafeHooksPath: true, allowUnsafeConfigEnvCount: secret.length > 0 },
    config: ['core.hooksPath=/dev/null', ...(options.config ?? [])],
    timeout: { block: options.timeoutMs ?? 300_000 },
  }).env({ ...hostGitEnv(options.env), ...secretEnv });
}

/**
 * The git config that sends a forge token to its own host only, as an HTTP header: never in a URL (URLs end up
 * in logs, traces and .git/config), never to another host. Pass it as hostGit's `secretConfig`.
 */
export function tokenConfig(remote: string, token: { value: string; host: string } | undefined): Array<[string, string]> {
  if (!token) return [];
  let url: URL;
  try {
    url = new URL(remote);
  } catch {
    return [];
  }
  if (url.protocol !== 'https:' || url.host !== token.host) return [];
  const basic = Buffer.from(`x-access-token:${token.value}`).toString('base64');
  return [[`http.https://${token.host}/.extraHeader`, `Authorization: Basic ${basic}`]];
}
