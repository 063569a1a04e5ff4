import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { CHANGE_BUNDLE, CHANGE_PATCH, SANDBOX_ARTIFACTS_DIR, SANDBOX_REPO_DIR } from '../src/protocol/messages.js';

const run = promisify(execFile);
const PATCH_CAP_BYTES = 5 * 1024 * 1024;

/**
 * Git as the runner uses it: hooks and fsmonitor off and prompts off, whatever a step wrote into .git/config.
 * This runs inside the sandbox as the step user (collect.ts), so it is for reliability, not safety: the host never
 * runs git in this tree.
 */
function git(cwd: string, args: string[]): Promise<{ stdout: string }> {
  return run('git', ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', '-c', 'commit.gpgsign=false', ...args], {
    cwd,
    maxBuffer: 16 * 1024 * 1024,
    // A step may have planted /tmp/.gitconfig (HOME is /tmp): only the repository's own config counts.
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' },
  });
}

export interface ChangeSummary {
  commits: number;
  bundle: string;
  patch: string;
}

/** Where one repository of the task lives in the sandbox, and where its changes go in `.asp/`. */
export interface BundleTarget {
  repoDir: string;
  base: string;
  bundle: string;
  patch: string;
}

/** The task's own repository: /workspace/repo → .asp/change.bundle and .asp/diff.patch. */
export function primaryTarget(base: string): BundleTarget {
  return { repoDir: SANDBOX_REPO_DIR, base, bundle: path.join(SANDBOX_ARTIFACTS_DIR, CHANGE_BUNDLE), patch: path.join(SANDBOX_ARTIFACTS_DIR, CHANGE_PATCH) };
}

/**
 * Commits what the steps changed on `branch`, then writes the commits on top of the base as a git bundle (what
 * the host fetches into its own clean clone) and a patch (for people, capped). Returns undefined when nothing changed.
 */
export async function bundleChanges(target: BundleTarget, branch: string, message: string): Promise<ChangeSummary | undefined> {
  const inRepo = (args: string[]) => git(target.repoDir, args);
  // One git call answers the common case, a task that changed nothing: a clean tree still on the base commit.
  const status = await inRepo(['status', '--porcelain=v2', '--branch', '--untracked-files=all']);
  const lines = status.stdout.split('\n').filter(Boolean);
  const dirty = lines.some((line) => !line.startsWith('#'));
  if (!dirty && lines.includes(`# branch.oid ${target.base}`)) return undefined;
  await inRepo(['checkout', '-q', '-B', branch]);
  if (dirty) {
    await inRepo(['add', '-A']);
    await inRepo(['commit', '-q', '--no-verify', '-m', message]);
  }
  const count = Number((await inRepo(['rev-list', '--count', `${target.base}..HEAD`])).stdout.trim());
  if (!count) return undefined;
  await mkdir(path.dirname(target.bundle), { recursive: true });
  await inRepo(['bundle', 'create', '-q', target.bundle, `refs/heads/${branch}`, `^${target.base}`]);
  await writeCapped(target.repoDir, ['-c', 'core.hooksPath=/dev/null', 'diff', '--binary', '--no-ext-diff', '--no-textconv', target.base, 'HEAD'], target.patch, PATCH_CAP_BYTES);
  return { commits: count, bundle: target.bundle, patch: target.patch };
}

/** Streams `git <args>` into `file`, stopping at `cap` bytes with a marker: a huge diff must not fill the volume. */
function writeCapped(cwd: string, args: string[], file: string, cap: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(file);
    const child = spawn('git', args, { cwd, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' } });
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
