import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { CHANGE_BUNDLE, CHANGE_PATCH, SANDBOX_ARTIFACTS_DIR, SANDBOX_REPO_DIR } from '../src/protocol/messages.js';
import { tool, toolEnv } from './runtime-tools.js';
import { asStepUser, openStepUserWriter } from './step-user.js';

const run = promisify(execFile);
const PATCH_CAP_BYTES = 5 * 1024 * 1024;
/** A step may have planted /tmp/.gitconfig (HOME is /tmp): only the repository's own config counts. */
const GIT_ENV = { GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' };
const GIT_SAFE = ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', '-c', 'commit.gpgsign=false'];

/**
 * Git as the runner uses it: as the step user (git reads the tree steps wrote; the runner reads only its output),
 * hooks, fsmonitor and prompts off whatever a step wrote into .git/config. That is for reliability, not safety:
 * the host never runs git in this tree.
 */
function git(cwd: string, args: string[]): Promise<{ stdout: string }> {
  return run(tool('git'), [...GIT_SAFE, ...args], asStepUser({ cwd, maxBuffer: 16 * 1024 * 1024, env: toolEnv({ ...process.env, ...GIT_ENV }) }));
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
  await run(tool('mkdir'), ['-p', path.dirname(target.bundle)], asStepUser({ env: toolEnv() }));
  await inRepo(['bundle', 'create', '-q', target.bundle, `refs/heads/${branch}`, `^${target.base}`]);
  await writeCapped(target.repoDir, ['diff', '--binary', '--no-ext-diff', '--no-textconv', target.base, 'HEAD'], target.patch, PATCH_CAP_BYTES);
  return { commits: count, bundle: target.bundle, patch: target.patch };
}

/**
 * Streams `git <args>` into `file`, stopping at `cap` bytes with a marker: a huge diff must not fill the volume.
 * git and the writer both run as the step user; the runner passes the bytes from one pipe to the other.
 */
function writeCapped(cwd: string, args: string[], file: string, cap: number): Promise<void> {
  const writer = openStepUserWriter(file);
  const child = spawn(tool('git'), [...GIT_SAFE, ...args], asStepUser({ cwd, stdio: ['ignore', 'pipe', 'ignore'], env: toolEnv({ ...process.env, ...GIT_ENV }) }));
  let written = 0;
  child.stdout.on('data', (chunk: Buffer) => {
    if (written >= cap) return;
    const part = chunk.subarray(0, cap - written);
    written += part.length;
    writer.stream.write(part);
    if (written >= cap) {
      writer.stream.write(`\n[asp: diff passed ${cap} bytes; the rest is in change.bundle]\n`);
      child.kill();
    }
  });
  const gitDone = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', () => resolve());
  });
  return gitDone.then(
    () => {
      writer.stream.end();
      return writer.done;
    },
    (error: unknown) => {
      writer.stream.end();
      throw error;
    },
  );
}
