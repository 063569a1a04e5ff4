/**
 * The line between the runner and the code under test. The runner is root in the container (with only the
 * capabilities container-spec.ts names); every step, and every helper that reads what steps wrote, runs as
 * STEP_UID with no capabilities. The kernel then keeps steps from signalling, ptracing or opening the /proc files
 * of the runner, and the runner can end every process of a step, daemons re-parented to init included.
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import type { Writable } from 'node:stream';
import { readdir, readFile } from 'node:fs/promises';
import { tool, toolEnv } from './runtime-tools.js';

export const STEP_UID = 1000;
export const STEP_GID = 1000;

/** How long the runner tries to end a step's processes before it calls the step unkillable. */
const SWEEP_LIMIT_MS = 10_000;
/** How long a file write as the step user may take (a FIFO planted at the path would block it for ever). */
const WRITE_LIMIT_MS = 10_000;

/**
 * Spawn options that drop a child to the step user (libuv clears supplementary groups, then sets gid and uid).
 * Only root can drop; the runner refuses to start as anyone else (canDropToStepUser), so outside a sandbox (unit
 * tests as a plain user) the child simply stays the caller's user.
 */
export function asStepUser<const T extends SpawnOptions>(options: T): T {
  return canDropToStepUser() ? { ...options, uid: STEP_UID, gid: STEP_GID } : options;
}

/** Whether the runner can separate itself from steps at all: it must start as root (container-spec.ts RUNNER_USER). */
export function canDropToStepUser(): boolean {
  return process.getuid?.() === 0;
}

interface StepProcess {
  pid: number;
  stopped: boolean;
  /** In uninterruptible sleep (a vfork parent whose child was stopped before exec stays there): never all stopped. */
  uninterruptible: boolean;
}

/**
 * Every live process whose real uid is the step user, read from /proc. A zombie is dead, unless its main thread
 * exited while other threads run on: /proc shows the group as `Z` with `Threads` above 1, and its threads appear
 * nowhere else at the top level. That group is alive, and a signal to its pid still reaches every thread.
 */
export async function stepProcesses(): Promise<StepProcess[]> {
  const found: StepProcess[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const status = await readFile(`/proc/${name}/status`, 'utf8').catch(() => '');
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    const state = /^State:\s+(\S)/m.exec(status)?.[1];
    const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 1);
    if (uid === undefined || Number(uid) !== STEP_UID || state === 'X') continue;
    if (state === 'Z' && threads <= 1) continue;
    found.push({ pid: Number(name), stopped: state === 'T' || state === 't', uninterruptible: state === 'D' });
  }
  return found;
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    /* gone already */
  }
}

/** Rounds of stop-then-kill before every round kills whatever it finds, stopped or not. */
const STOP_ROUNDS = 50;

/**
 * Ends every process of the step user and resolves once none is left (zombies aside, which init reaps). First
 * every one is stopped, so none can fork while the others die (a fork bomb at the pids limit refills each freed pid
 * at once), then all are killed. A process that never stops (uninterruptible sleep), or a round limit, makes every
 * later round kill all it finds outright. Resolves with the pids still alive after SWEEP_LIMIT_MS.
 */
export async function endStepProcesses(): Promise<number[]> {
  const until = performance.now() + SWEEP_LIMIT_MS;
  for (let round = 0; ; round += 1) {
    const left = await stepProcesses();
    if (!left.length) return [];
    if (performance.now() > until) return left.map((entry) => entry.pid);
    const running = left.filter((entry) => !entry.stopped);
    const stopFirst = round < STOP_ROUNDS && running.length > 0 && !left.some((entry) => entry.uninterruptible);
    if (stopFirst) for (const entry of running) signal(entry.pid, 'SIGSTOP');
    else for (const entry of left) signal(entry.pid, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, stopFirst ? 1 : 10));
  }
}

/**
 * A writer of `file` as the step user, so the runner never opens a path a step could have planted: a symlink or a
 * FIFO there is the step's own business. The old file is removed first (a FIFO would block the write), and a write
 * that takes longer than WRITE_LIMIT_MS is cut.
 */
export function openStepUserWriter(file: string): { stream: Writable; done: Promise<void> } {
  // Only builtins and one exec in the common case (the directory there, no old file): this runs once per step.
  const script = '{ [ -d "${0%/*}" ] || mkdir -p "${0%/*}"; } && { [ ! -e "$0" ] && [ ! -L "$0" ] || rm -f "$0"; } && exec cat > "$0"';
  const child = spawn(tool('sh'), ['-c', script, file], asStepUser({ stdio: ['pipe', 'ignore', 'pipe'], env: toolEnv() }));
  let stderr = '';
  const timer = setTimeout(() => child.kill('SIGKILL'), WRITE_LIMIT_MS);
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-500)));
  child.stdin.on('error', () => {});
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, name) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`cannot write ${file} (${name ?? `exit ${code}`})${stderr.trim() ? `: ${stderr.trim().split('\n')[0]}` : ''}`));
    });
  });
  return { stream: child.stdin, done };
}

/** Writes `content` to `file` as the step user (openStepUserWriter). */
export function writeAsStepUser(file: string, content: string): Promise<void> {
  const writer = openStepUserWriter(file);
  writer.stream.end(content);
  return writer.done;
}
