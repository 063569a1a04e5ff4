import { AspError } from '../core/asp-error.js';
import { SANDBOX_RUNTIME_DIR, type RunnerIdentity } from '../protocol/messages.js';
import type { EngineInfo } from './sandbox-backend.js';
import { isGvisor } from './seccomp-profile.js';

/*
 * What every sandbox is, whichever backend makes it: who the runner and the steps run as, what the runner may do,
 * what environment gets in, and how asp checks from the runner's own mouth that the engine applied it.
 */

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
    reason:
      'to stop and kill every process of uid 1000 when a step ends, daemons re-parented to init included, ' + 'without starting a helper (a fork bomb at the pids limit leaves no pid free for one)',
  },
  {
    cap: 'DAC_READ_SEARCH',
    reason:
      'so the --disk watchdog sees every directory of the workspace, also one a step made unreadable (chmod 000) to hide ' +
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

/** What every sandbox's environment holds, whatever the user lets in: these win over a variable of the same name. */
const FIXED_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/tmp',
  TERM: 'xterm',
  SHELL: '/bin/bash',
  LANG: 'C.UTF-8',
  CI: 'true',
};

/** The whole environment of the sandbox: fixed values plus the explicit allowlist. Nothing else from the host. */
export function sandboxEnv(allowed: Record<string, string>): string[] {
  return Object.entries({ ...allowed, ...FIXED_ENV }).map(([key, value]) => `${key}=${value}`);
}

/** The allowlist as the runner may add it to its environment (the `env` message): the fixed names left out, as they win. */
export function allowedOnly(allowed: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(allowed).filter(([name]) => !Object.hasOwn(FIXED_ENV, name)));
}

/**
 * Variables of an image's ENV that would change the runner itself (a library preloaded into root's process, Node's
 * own options): emptied, which the loader and Node both take as unset. The rest of the image's ENV is the steps'.
 */
const RUNNER_NEUTRAL_ENV = ['LD_PRELOAD=', 'LD_AUDIT=', 'NODE_OPTIONS='];
/** git's identity for the runner's commits, which asp's own image sets in its ENV. */
const GIT_IDENTITY_ENV = ['GIT_AUTHOR_NAME=asp', 'GIT_AUTHOR_EMAIL=asp@sandbox.invalid', 'GIT_COMMITTER_NAME=asp', 'GIT_COMMITTER_EMAIL=asp@sandbox.invalid'];

/** How the runner starts: its command (undefined: the image's own ENTRYPOINT), its arguments, its whole environment. */
export interface RunnerLaunch {
  entrypoint: string[] | undefined;
  cmd: string[];
  env: string[];
}

/** The runner's file (scripts/post-build.mjs), under /opt/asp/sandbox in asp's image and in the runtime alike. */
const RUNNER_FILE = 'asp-sandbox.cjs';
const OWN_RUNNER = `/opt/asp/sandbox/${RUNNER_FILE}`;

/**
 * In asp's own image the runner is what its CMD runs. On any other image it comes from the runtime mounted at /opt/asp: Node
 * through the runtime's own loader and libraries (the image may have another libc, or none), so nothing of the
 * image's runs before the runner, whatever its ENTRYPOINT, CMD, USER, WORKDIR or ENV say.
 */
export function runnerLaunch(allowedEnv: Record<string, string>, fromRuntime: boolean, extraEnv: string[] = []): RunnerLaunch {
  const env = [...sandboxEnv(allowedEnv), ...extraEnv];
  // Node itself, not the asp-sandbox wrapper script (what the image's CMD says): one exec less for every task.
  if (!fromRuntime) return { entrypoint: undefined, cmd: ['node', OWN_RUNNER], env };
  const dir = SANDBOX_RUNTIME_DIR;
  return {
    entrypoint: [`${dir}/lib/ld.so`, '--library-path', `${dir}/lib`, `${dir}/bin/node`],
    cmd: [`${dir}/sandbox/${RUNNER_FILE}`],
    env: [...env, `ASP_RUNTIME=${dir}`, ...RUNNER_NEUTRAL_ENV, ...GIT_IDENTITY_ENV],
  };
}

/**
 * What the runner's own kernel says of it (HelloMessage.identity) against what asp asked for: uid 0 holding exactly
 * RUNNER_CAPABILITIES, a seccomp filter, no-new-privileges (where the kernel reports it; gVisor does not). An engine
 * can echo a field back in inspect and still not apply it; the running process cannot pretend. Undefined when right.
 */
export function identityMismatch(identity: RunnerIdentity | undefined): string | undefined {
  if (!identity) return 'the runner reported no identity';
  const wanted = runnerCapEff();
  const wrong = [
    ...(identity.uid !== 0 ? [`runs as uid ${identity.uid}, not 0`] : []),
    ...(identity.capEff !== wanted ? [`holds capabilities ${identity.capEff}, not ${wanted}`] : []),
    ...(identity.seccomp !== 2 ? [`has no seccomp filter (mode ${identity.seccomp})`] : []),
    ...(identity.noNewPrivs !== undefined && identity.noNewPrivs !== 1 ? ['lacks no-new-privileges'] : []),
  ];
  return wrong.length ? `the sandbox's runner ${wrong.join(', ')}` : undefined;
}

/**
 * The lowest pids limit a gVisor sandbox runs under. The pids cgroup counts the threads of gVisor's own kernel, which
 * grow with the processes in it, and a sandbox that reaches the limit dies (exit 2) instead of failing the fork:
 * measured with runsc 20221219, a step of a shell pipeline died at 128 and 256, one with 20 background processes
 * at 256 and ran at 384. asp's default (512) is the floor: lower asks are raised to it, and the task says so.
 */
export const GVISOR_MIN_PIDS = 512;

/** The limits a task runs under on `runtime`: `limits` unless gVisor needs more; `note` says what changed. */
export function runtimeLimits<L extends { pids: number }>(runtime: string | undefined, limits: L): { limits: L; note?: string } {
  if (!isGvisor(runtime) || limits.pids >= GVISOR_MIN_PIDS) return { limits };
  return {
    limits: { ...limits, pids: GVISOR_MIN_PIDS },
    note: `--pids ${limits.pids} raised to ${GVISOR_MIN_PIDS} under ${runtime}: gVisor's own threads count against the limit, and a sandbox that reaches it dies instead of failing the fork`,
  };
}

/**
 * Whether the daemon can run the runtime asked for, hardened: it must be registered, and gVisor must load the
 * container's seccomp profile (runsc ignores it without --oci-seccomp, and asp's profile would silently not apply).
 */
export function checkRuntime(runtime: string | undefined, info: EngineInfo): void {
  if (!runtime) return;
  if (info.product === 'podman') {
    // Podman's Docker API takes HostConfig.Runtime and runs the container under its default anyway.
    throw new AspError(
      'RUNTIME_UNAVAILABLE',
      `Podman ignores the runtime a container asks for: --runtime ${runtime} would run under Podman's default runtime`,
      "drop --runtime, or set Podman's runtime in containers.conf ([engine] runtime), or use a Docker daemon for --runtime",
    );
  }
  if (info.product === 'kubernetes') {
    // A runtime on a cluster is a RuntimeClass; gVisor's own configuration there is the node's, not asp's to check.
    if (!info.runtimesUnknown && !info.runtimes.includes(runtime)) {
      throw new AspError(
        'RUNTIME_UNAVAILABLE',
        `the cluster has no RuntimeClass "${runtime}" (it has: ${info.runtimes.join(', ') || 'none'})`,
        'install the runtime on the nodes with its RuntimeClass (gVisor: a RuntimeClass with handler runsc), or drop --runtime',
      );
    }
    return;
  }
  if (!info.runtimes.includes(runtime)) {
    throw new AspError(
      'RUNTIME_UNAVAILABLE',
      `the Docker daemon has no runtime "${runtime}" (it has: ${info.runtimes.join(', ') || 'none listed'})`,
      isGvisor(runtime) ? 'install that runtime in the daemon or drop --runtime (README: gVisor)' : 'install that runtime in the daemon or drop --runtime',
    );
  }
  const args = info.runtimeArgs?.[runtime] ?? [];
  if (isGvisor(runtime) && !args.some((arg) => /^--?network[= ]none$/.test(arg))) {
    // Without it runsc refuses every start ("cannot run with network enabled in root network namespace") and leaves
    // its gofer and sandbox processes behind.
    throw new AspError(
      'RUNTIME_UNAVAILABLE',
      `the runtime "${runtime}" is registered without --network=none, so gVisor cannot start a sandbox that has no network`,
      `add "--network=none" to its runtimeArgs in /etc/docker/daemon.json and reload dockerd (README: gVisor; scripts/enable-gvisor.sh does both)`,
    );
  }
  if (isGvisor(runtime) && !args.some((arg) => /^--?oci-seccomp(=true)?$/.test(arg))) {
    throw new AspError(
      'RUNTIME_UNAVAILABLE',
      `the runtime "${runtime}" is registered without --oci-seccomp, so gVisor would not apply asp's seccomp profile`,
      `add "--oci-seccomp" to its runtimeArgs in /etc/docker/daemon.json and reload dockerd (README: gVisor)`,
    );
  }
}
