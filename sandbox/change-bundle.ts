import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CHANGE_BUNDLE, CHANGE_PATCH, SANDBOX_ARTIFACTS_DIR, SANDBOX_REPO_DIR } from '../src/protocol/messages.js';

const run = promisify(execFile);
const PATCH_CAP_BYTES = 5 * 1024 * 1024;

/**
 * Git as the runner uses it: hooks and fsmonitor off and prompts off, whatever a step wrote into .git/config.
 * This runs inside the sandbox, so it is for reliability, not safety: the host never runs git in this tree.
 */
function git(args: string[]): Promise<{ stdout: string }> {
  return run('git', ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', '-c', 'commit.gpgsign=false', ...args], {
    cwd: SANDBOX_REPO_DIR,
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0' },
  });
}

export interface ChangeSummary {
  commits: number;
  bundle: string;
  patch: string;
}

/**
 * Commits what the steps changed on `branch`, then writes the commits on top of `base` as `.asp/change.bundle`
 * (what the host fetches into its own clean clone) and `.asp/diff.patch` (for people, capped).
 * Returns undefined when nothing changed.
 */
export async function bundleChanges(base: string, branch: string, message: string): Promise<ChangeSummary | undefined> {
  await git(['checkout', '-q', '-B', branch]);
  const status = await git(['status', '--porcelain', '--untracked-files=all']);
  if (status.stdout.trim()) {
    await git(['add', '-A']);
    await git(['commit', '-q', '--no-verify', '-m', message]);
  }
  const count = Number((await git(['rev-list', '--count', `${base}..HEAD`])).stdout.trim());
  if (!count) return undefined;
  const bundle = path.join(SANDBOX_ARTIFACTS_DIR, CHANGE_BUNDLE);
  await git(['bundle', 'create', '-q', bundle, `refs/heads/${branch}`, `^${base}`]);
  const patch = path.join(SANDBOX_ARTIFACTS_DIR, CHANGE_PATCH);
  await writeCapped(['-c', 'core.hooksPath=/dev/null', 'diff', '--binary', base, 'HEAD'], patch, PATCH_CAP_BYTES);
  return { commits: count, bundle, patch };
}

/** Streams `git <args>` into `file`, stopping at `cap` bytes with a marker: a huge diff must not fill the volume. */
function writeCapped(args: string[], file: string, cap: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(file);
    const child = spawn('git', args, { cwd: SANDBOX_REPO_DIR, stdio: ['ignore', 'pipe', 'ignore'] });
    let written = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      if (written >= cap) return;
      const part = chunk.subarray(0, cap - written);
      written += part.length;
      out.write(part);
      if (written >= cap) {
        out.write(`\n[asp: diff passed ${cap} bytes; the rest is in change.bundle]\n`);
        child.kill();
      }
    });
    child.on('error', reject);
    child.on('close', () => out.end(resolve));
  });
}
