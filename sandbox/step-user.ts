/**
 * The line between the runner and the code under test. The runner is root in the container (with only the
 * capabilities container-spec.ts names); every step, and every helper that reads what steps wrote, runs as
 * STEP_UID with no capabilities. The kernel then keeps steps from signalling, ptracing or opening the /proc files
 * of the runner, and the runner can end every process of a step, daemons re-parented to init included.
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';

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
}

/** Every live (not zombie) process whose real uid is the step user, read from /proc. */
export async function stepProcesses(): Promise<StepProcess[]> {
  const found: StepProcess[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const status = await readFile(`/proc/${name}/status`, 'utf8').catch(() => '');
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    const state = /^State:\s+(\S)/m.exec(status)?.[1];
    if (uid === undefined || Number(uid) !== STEP_UID || state === 'Z' || state === 'X') continue;
    found.push({ pid: Number(name), stopped: state === 'T' || state === 't' });
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

/**
 * Ends every process of the step user and resolves once none is left (zombies aside, which init reaps): first
 * every one is stopped, so none can fork while the others die (a fork bomb at the pids limit refills each freed
 * pid at once), then all are killed. Resolves with the pids still alive after SWEEP_LIMIT_MS (uninterruptible
 * sleep in the kernel is the only way to get there).
 */
export async function endStepProcesses(): Promise<number[]> {
  const until = Date.now() + SWEEP_LIMIT_MS;
  for (;;) {
    const left = await stepProcesses();
    if (!left.length) return [];
    if (Date.now() > until) return left.map((entry) => entry.pid);
    const running = left.filter((entry) => !entry.stopped);
    if (running.length) {
      for (const entry of running) signal(entry.pid, 'SIGSTOP');
    } else {
      for (const entry of left) signal(entry.pid, 'SIGKILL');
    }
    await new Promise((resolve) => setTimeout(resolve, running.length ? 1 : 10));
  }
}

/**
 * Writes `content` to `file` as the step user, so the runner never opens a path a step could have planted: a
 * symlink or a FIFO there is the step's own business. The old file is removed first (a FIFO would block the write).
 */
export function writeAsStepUser(file: string, content: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'mkdir -p "${0%/*}" && rm -f "$0" && cat > "$0"', file], asStepUser({ stdio: ['pipe', 'ignore', 'pipe'] }));
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), WRITE_LIMIT_MS);
    child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-500)));
    child.stdin?.on('error', () => {});
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, name) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`cannot write ${file} (${name ?? `exit ${code}`})${stderr.trim() ? `: ${stderr.trim().split('\n')[0]}` : ''}`));
    });
    child.stdin?.end(content);
  });
}
