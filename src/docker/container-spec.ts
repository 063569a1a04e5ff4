import type { Limits } from '../config/task-spec.js';
import type { ContainerCreateBody } from './port.js';
import { SANDBOX_CHECK_DIR, SANDBOX_RUNTIME_DIR as RUNTIME_MOUNT, SANDBOX_WORKSPACE } from '../protocol/messages.js';
import { seccompSecurityOpt } from '../backend/seccomp-profile.js';
import { RUNNER_CAPABILITIES, RUNNER_USER, runnerLaunch } from '../backend/sandbox-policy.js';

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
  /**
   * The runtime volume (runtime-volume.ts) for an image that is not asp's own: mounted read-only at /opt/asp, and the
   * runner started from it, whatever the image's ENTRYPOINT, CMD, USER, WORKDIR or ENV say.
   */
  runnerRuntime?: string | undefined;
  /**
   * A warm sandbox, started before anyone attaches: its runner says hello only once the host's first bytes arrive
   * (what it wrote before an attach would be lost), as on Kubernetes.
   */
  helloAfterInput?: boolean | undefined;
}

/** Docker's json-file log of a sandbox is capped: the protocol is read live, the log is only a fallback. */
const LOG_MAX_SIZE = '10m';

/**
 * The hardened container every task runs in. There is no opt-out: this is the product.
 * Every field here is asserted by test/unit/container-spec.test.ts and checked from inside by the integration suite.
 */
export function containerSpec(input: ContainerSpecInput): ContainerCreateBody {
  const { limits } = input;
  const launch = runnerLaunch(input.allowedEnv, Boolean(input.runnerRuntime), input.helloAfterInput ? ['ASP_HELLO_AFTER_INPUT=1'] : []);
  return {
    name: input.name,
    Image: input.image,
    // On any other image the runner comes from the runtime: Node through the runtime's own loader and libraries
    // (the image may have another libc, or none), so nothing of the image's runs before the runner.
    ...(launch.entrypoint ? { Entrypoint: launch.entrypoint } : {}),
    Cmd: launch.cmd,
    Env: launch.env,
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
      Mounts: [
        { Type: 'volume', Source: input.volume, Target: SANDBOX_WORKSPACE, ReadOnly: false },
        // NoCopy: an empty runtime volume must never be filled from the task's image.
        ...(input.runnerRuntime ? [{ Type: 'volume' as const, Source: input.runnerRuntime, Target: RUNTIME_MOUNT, ReadOnly: true, VolumeOptions: { NoCopy: true } }] : []),
      ],
      Binds: [],
      Devices: [],
      AutoRemove: false, // asp removes it itself, after copying .asp/ out
      ...(input.runtime ? { Runtime: input.runtime } : {}),
    },
  };
}
