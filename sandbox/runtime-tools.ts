import { chmodSync, statSync } from 'node:fs';

/*
 * Where the runner finds the programs it runs itself (tar, git, chmod, sh and the few tools sh scripts of its own
 * call): in asp's own image, the image's; in any other image, the runtime asp mounted read-only at ASP_RUNTIME
 * (src/docker/runtime-volume.ts), whose programs load their libraries from the runtime alone (LD_LIBRARY_PATH, set
 * for them only: a step gets the image's own world, nothing of the runtime's).
 */

/** The mounted runtime's root, when the host mounted one (any image but asp's own). */
const RUNTIME = process.env.ASP_RUNTIME || undefined;

/** The uid/gid of every step: /workspace must be theirs to write in. */
const STEP_UID = 1000;

export type RunnerTool = 'git' | 'tar' | 'chmod' | 'mkdir' | 'sh';

/** The program to spawn for `name`. */
export function tool(name: RunnerTool): string {
  if (RUNTIME) return `${RUNTIME}/bin/${name}`;
  return name === 'sh' ? '/bin/sh' : name;
}

/** The environment of one of the runner's own programs: `base`, plus, on a runtime, its libraries and git's helpers. */
export function toolEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (!RUNTIME) return base;
  return { ...base, PATH: `${RUNTIME}/bin`, LD_LIBRARY_PATH: `${RUNTIME}/lib`, GIT_EXEC_PATH: `${RUNTIME}/git-core` };
}

/** Variables the host empties so that the image's values cannot change the runner (container-spec.ts). */
const RUNNER_NEUTRAL = ['LD_PRELOAD', 'LD_AUDIT', 'NODE_OPTIONS'];

/**
 * A step's environment: the runner's without the runtime's own variables, without the emptied ones (an empty
 * LD_PRELOAD is nothing a step needs to see), and with SHELL naming the shell that runs it.
 */
export function stepEnv(shell: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const { ASP_RUNTIME: _runtime, ASP_HELLO_AFTER_INPUT: inPod, ...rest } = base;
  for (const name of RUNNER_NEUTRAL) if (rest[name] === '') delete rest[name];
  // In a pod the kubelet adds the API server's address (KUBERNETES_SERVICE_HOST, _PORT, ...) to every container,
  // service links or not: not the steps' business, and nothing of the host's or the cluster's reaches them.
  if (inPod === '1') for (const name of Object.keys(rest)) if (name.startsWith('KUBERNETES_')) delete rest[name];
  return { ...rest, SHELL: shell };
}

/**
 * In an image that has no /workspace, Docker makes the volume's mount point root's (asp's image makes it the step
 * user's). The runner is root and owns it then: it opens it to the steps, sticky, so what the runner itself puts
 * there (the check dir) stays its own. No capability is needed for a chmod of one's own directory.
 */
export function openWorkspaceToSteps(dir: string): void {
  // Outside a container (a test that starts the runner on its own) there is no mount point: nothing to open.
  const info = statSync(dir, { throwIfNoEntry: false });
  if (!info || info.uid === STEP_UID) return;
  if (info.uid !== process.getuid?.()) throw new Error(`${dir} belongs to uid ${info.uid}: the image's /workspace is neither the step user's nor the runner's`);
  chmodSync(dir, 0o1777);
}

/**
 * In a pod the kubelet bind-mounts /dev/termination-log into every container, mode 0666, on the node's disk and
 * outside the workspace's --disk: the one path besides the workspace and /tmp that steps could fill. The runner owns
 * it (root) and closes it to them; the kubelet reads it as root all the same.
 */
export function closeTerminationLog(file = '/dev/termination-log'): void {
  const info = statSync(file, { throwIfNoEntry: false });
  if (!info || info.uid !== process.getuid?.() || (info.mode & 0o077) === 0) return;
  chmodSync(file, 0o600);
}

/**
 * A Kubernetes emptyDir is root's with mode 0777, not sticky as Docker's tmpfs /tmp is: there any step could remove
 * or replace what another process put in /tmp. The runner owns it and makes it sticky; a /tmp that is already sticky,
 * or not its own, is left as it is.
 */
export function makeTmpSticky(dir = '/tmp'): void {
  const info = statSync(dir, { throwIfNoEntry: false });
  if (!info || info.uid !== process.getuid?.() || (info.mode & 0o1000) !== 0) return;
  chmodSync(dir, 0o1777);
}
