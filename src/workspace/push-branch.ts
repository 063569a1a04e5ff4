import { AspError, errorMessage } from '../core/asp-error.js';
import { redact } from '../forge/forge.js';
import { hostGit, tokenConfig } from './host-git.js';

/**
 * Pushes the fetched changes (a ref in the host's own clean clone) to `branch` of `remote`. Never forced: a
 * branch that moved on the remote is a rejection the user resolves, not something to overwrite.
 * A token is sent as an HTTP header only to the host it belongs to, and never appears in a URL or a message.
 */
export async function pushBranch(
  repoDir: string,
  options: {
    remote: string;
    ref: string;
    branch: string;
    env: Readonly<Record<string, string | undefined>>;
    token?: { value: string; host: string } | undefined;
    /** Named in the hint, so it can be followed as it is. */
    taskId?: string | undefined;
  },
): Promise<void> {
  const git = hostGit({ env: options.env, baseDir: repoDir, secretConfig: tokenConfig(options.remote, options.token), timeoutMs: 600_000 });
  try {
    await git.raw(['push', '--porcelain', options.remote, `${options.ref}:refs/heads/${options.branch}`]);
  } catch (error) {
    const text = errorMessage(error);
    const why = /non-fast-forward|fetch first|rejected/.test(text)
      ? `the remote branch ${options.branch} has commits the task did not start from (non-fast-forward)`
      : /403|denied|not allowed|permission/i.test(text)
        ? 'permission denied'
        : (text.split('\n').find((line) => /^(fatal|error|remote):/.test(line.trim())) ?? text.split('\n')[0] ?? 'unknown error').trim();
    throw new AspError(
      'PUSH_REJECTED',
      `push of ${options.branch} to ${redact(options.remote)} rejected: ${why.replace(options.token?.value ?? '\0', '***')}`,
      `the work is kept: asp approve ${options.taskId ?? '<task>'} --branch <another-branch> pushes it under another branch, asp approve ${options.taskId ?? '<task>'} tries again once access is fixed, --deny discards it`,
      { cause: error },
    );
  }
}
