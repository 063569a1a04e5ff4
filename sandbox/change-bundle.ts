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

/** The subject line's length at most, in characters: what `git log --oneline` and forges show whole. */
export const SUBJECT_MAX_CHARS = 72;

/**
 * The commit message of a task's changes: a subject of the task's first line, cut at a word with an ellipsis to fit
 * SUBJECT_MAX_CHARS, and, when the subject is not the whole task, the task text whole in the body.
 */
export function commitMessage(taskText: string, taskId: string): string {
  const text = taskText.trim();
  const firstLine = (text.split('\n')[0] ?? '').replace(/\s+/g, ' ').trim();
  const subject = `asp: ${firstLine || taskId}`;
  const chars = Array.from(subject);
  if (chars.length <= SUBJECT_MAX_CHARS) return text && text !== firstLine ? `${subject}\n\n${text}\n` : `${subject}\n`;
  // Room for the ellipsis; back to the last space, unless that throws away most of the line (one very long word).
  const room = chars.slice(0, SUBJECT_MAX_CHARS - 1).join('');
  const space = room.lastIndexOf(' ');
  const cut = space > SUBJECT_MAX_CHARS / 2 ? room.slice(0, space) : room;
  return `${cut.trimEnd()}…\n\n${text}\n`;
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
    // From stdin: the message carries the task whole (up to 1 MiB), past what one argument may hold (128 KiB).
    await gitWithInput(target.repoDir, ['commit', '-q', '--no-verify', '--cleanup=whitespace', '-F', '-'], message);
  }
  const count = Number((await inRepo(['rev-list', '--count', `${target.base}..HEAD`])).stdout.trim());
  if (!count) return undefined;
  await run(tool('mkdir'), ['-p', path.dirname(target.bundle)], asStepUser({ env: toolEnv() }));
  await inRepo(['bundle', 'create', '-q', target.bundle, `refs/heads/${branch}`, `^${target.base}`]);
  await writeCapped(target.repoDir, ['diff', '--binary', '--no-ext-diff', '--no-textconv', target.base, 'HEAD'], target.patch, PATCH_CAP_BYTES);
  return { commits: count, bundle: target.bundle, patch: target.patch };
}

/** `git <args>` with `input` on its stdin, as the step user; rejects with its stderr when it fails. */
function gitWithInput(cwd: string, args: string[], input: string): Promise<void> {
  const child = spawn(tool('git'), [...GIT_SAFE, ...args], asStepUser({ cwd, stdio: ['pipe', 'ignore', 'pipe'], env: toolEnv({ ...process.env, ...GIT_ENV }) }));
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < 4096) stderr += chunk.toString('utf8');
  });
  child.stdin.on('error', () => {}); // git that exits early closes its stdin: its exit status says why
  child.stdin.end(input);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`git ${args[0]} exited ${code}: ${stderr.trim()}`))));
  });
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
