import type { Limits } from '../config/task-spec.js';
import type { ContainerCreateBody } from '../docker/port.js';
import { SANDBOX_CHECK_DIR, SANDBOX_WORKSPACE } from '../protocol/messages.js';
import { seccompSecurityOpt } from './seccomp-profile.js';

export interface ContainerSpecInput {
  name: string;
  image: string;
  volume: string;
  labels: Record<string, string>;
  limits: Limits;
  /** Host variables the user allowed in by name (`--env NAME`), already resolved. */
  allowedEnv: Record<string, string>;
  runtime?: string | undefined;
  /**
   * A clean-room check with a check dir: a tmpfs at /workspace/check, owned by root (the runner unpacks the dir
   * there as itself), so steps can read the hidden files but never change them.
   */
  checkDir?: boolean | undefined;
}

/** Docker's json-file log of a sandbox is capped: the protocol is read live, the log is only a fallback. */
const LOG_MAX_SIZE = '10m';

/**
 * The runner runs as root *inside* the container so that steps (uid 1000) cannot signal, ptrace, or open the
 * /proc files of any asp process: the kernel lets a process do that only to processes of its own uid. Root here
 * holds nothing but these capabilities, each for one reason; everything else is dropped, for the runner and tini
 * too, and a step loses even these when the runner drops it to uid 1000 (a uid change clears a process's
 * capabilities, and no-new-privileges keeps them from coming back through setuid files).
 */
export const RUNNER_CAPABILITIES: ReadonlyArray<{ cap: string; reason: string }> = [
  { cap: 'SETUID', reason: 'to start every step, and every helper that reads what steps wrote, as uid 1000' },
  { cap: 'SETGID', reason: 'to start them as gid 1000 with no supplementary groups' },
  {
    cap: 'KILL',
    reason: 'to stop and kill every process of uid 1000 when a step ends, daemons re-parented to init included, ' +
      'without starting a helper (a fork bomb at the pids limit leaves no pid free for one)',
  },
  {
    cap: 'DAC_READ_SEARCH',
    reason: 'so the --disk watchdog sees every directory of the workspace, also one a step made unreadable (chmod 000) to hide ' +
      'what it wrote; the watchdog only lists directories and stats entries, it opens no file a step wrote, and ' +
      'open_by_handle_at, the syscall that would make this capability an escape, is refused by seccomp-profile.ts',
  },
];
/** Linux's numbers of the runner's capabilities (linux/capability.h), for its CapEff mask. */
const CAPABILITY_BITS: Record<string, number> = { DAC_READ_SEARCH: 2, KILL: 5, SETGID: 6, SETUID: 7 };

/** The runner's effective capabilities as /proc/self/status shows them: 16 hex digits. */
export function runnerCapEff(): string {
  const mask = RUNNER_CAPABILITIES.reduce((bits, entry) => bits | (1n << BigInt(CAPABILITY_BITS[entry.cap] ?? 63)), 0n);
  return mask.toString(16).padStart(16, '0');
}

/** The identity of the runner (root in the container's user namespace, with only RUNNER_CAPABILITIES). */
export const RUNNER_USER = '0:0';
/** The identity of every step (and of what reads step output files): no capabilities at all. */
export const STEP_USER = '1000:1000';

/**
 * The hardened container every task runs in. There is no opt-out: this is the product.
 * Every field here is asserted by test/unit/container-spec.test.ts and checked from inside by the integration suite.
 */
export function containerSpec(input: ContainerSpecInput): ContainerCreateBody {
  const { limits } = input;
  return {
    name: input.name,
    Image: input.image,
    Cmd: ['asp-sandbox'],
    Env: sandboxEnv(input.allowedEnv),
    User: RUNNER_USER,
    WorkingDir: SANDBOX_WORKSPACE,
    Labels: input.labels,
    // stdin carries the task, the workspace and model answers from the host; it is a pipe, never a TTY. It closes
    // when the host detaches (StdinOnce), so a runner whose host died never waits on it for ever.
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    Tty: false, // the protocol needs separate stdout/stderr; a TTY would merge them and mangle bytes
    NetworkDisabled: true,
    StopTimeout: 2, // short grace: init forwards the signal, then the daemon kills
    HostConfig: {
      NetworkMode: 'none',
      ReadonlyRootfs: true,
      // Docker's default tmpfs is noexec, which breaks shell test suites; nosuid/nodev keep it harmless.
      Tmpfs: {
        '/tmp': `rw,exec,nosuid,nodev,size=${limits.tmpfs}`,
        ...(input.checkDir ? { [SANDBOX_CHECK_DIR]: `rw,exec,nosuid,nodev,size=${limits.tmpfs},mode=0755` } : {}),
      },
      CapDrop: ['ALL'],
      CapAdd: RUNNER_CAPABILITIES.map((entry) => entry.cap),
      // asp's own seccomp profile, never the engine's default (seccomp-profile.ts says what it refuses and why).
      SecurityOpt: ['no-new-privileges', seccompSecurityOpt(input.runtime)],
      Privileged: false,
      Init: true, // PID 1 reaps zombies and forwards signals, so a kill stops every process of the task
      PidsLimit: limits.pids,
      Memory: limits.memory,
      // Swap equal to memory means no swap at all: the memory limit is the real limit.
      MemorySwap: limits.memory,
      NanoCpus: Math.round(limits.cpus * 1e9),
      IpcMode: 'private',
      LogConfig: { Type: 'json-file', Config: { 'max-size': LOG_MAX_SIZE, 'max-file': '1' } },
      // A named volume, never a bind mount: untrusted code cannot plant a symlink on the host's file system.
      Mounts: [{ Type: 'volume', Source: input.volume, Target: SANDBOX_WORKSPACE, ReadOnly: false }],
      Binds: [],
      Devices: [],
      AutoRemove: false, // asp removes it itself, after copying .asp/ out
      ...(input.runtime ? { Runtime: input.runtime } : {}),
    },
  };
}

/** The whole environment of the sandbox: fixed values plus the explicit allowlist. Nothing else from the host. */
export function sandboxEnv(allowed: Record<string, string>): string[] {
  const fixed: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/tmp',
    TERM: 'xterm',
    SHELL: '/bin/bash',
    LANG: 'C.UTF-8',
    CI: 'true',
  };
  return Object.entries({ ...allowed, ...fixed }).map(([key, value]) => `${key}=${value}`);
}
