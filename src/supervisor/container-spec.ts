import type { Limits } from '../config/task-spec.js';
import type { ContainerCreateBody } from '../docker/port.js';
import { SANDBOX_WORKSPACE } from '../protocol/messages.js';

export interface ContainerSpecInput {
  name: string;
  image: string;
  volume: string;
  labels: Record<string, string>;
  limits: Limits;
  /** Host variables the user allowed in by name (`--env NAME`), already resolved. */
  allowedEnv: Record<string, string>;
  runtime?: string | undefined;
}

/** Docker's json-file log of a sandbox is capped: the protocol is read live, the log is only a fallback. */
const LOG_MAX_SIZE = '10m';

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
    User: '1000:1000',
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
      Tmpfs: { '/tmp': `rw,exec,nosuid,nodev,size=${limits.tmpfs}` },
      CapDrop: ['ALL'],
      CapAdd: [],
      SecurityOpt: ['no-new-privileges'],
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
