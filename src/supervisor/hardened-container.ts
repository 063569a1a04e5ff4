import { AspError } from '../core/asp-error.js';
import type { ContainerCreateBody, ContainerHardening, DaemonInfo, DockerPort } from '../docker/port.js';
import type { RunnerIdentity } from '../protocol/messages.js';
import { runnerCapEff } from './container-spec.js';
import { isGvisor } from './seccomp-profile.js';

/**
 * Creates the sandbox and reads it back before it ever starts: Podman and some remote engines accept fields they
 * do not implement and say nothing (Podman runs `--runtime runsc` under runc). A sandbox that is not hardened as
 * asked is removed unstarted and the task ends with HARDENING_IGNORED (exit 3).
 */
export async function createHardenedContainer(docker: DockerPort, body: ContainerCreateBody): Promise<string> {
  const id = await docker.createContainer(body);
  let ignored: string[];
  try {
    ignored = ignoredHardening(body, await docker.inspectContainer(id));
  } catch (error) {
    await docker.removeContainer(id).catch(() => {});
    throw error;
  }
  if (ignored.length) {
    await docker.removeContainer(id).catch(() => {});
    throw new AspError(
      'HARDENING_IGNORED',
      `the container engine ignored hardening asp asked for (${ignored.join('; ')}): the sandbox was removed unstarted`,
      body.HostConfig.Runtime && ignored.some((entry) => entry.startsWith('Runtime'))
        ? 'this engine cannot run that runtime: leave out --runtime, or use a Docker Engine that has it registered'
        : 'use a Docker Engine (20.10 or later) that honours these fields',
    );
  }
  return id;
}

const capName = (cap: string) => cap.toUpperCase().replace(/^CAP_/, '');

/** Every hardening field of `asked` that the daemon's view of the container does not match, described for people. */
export function ignoredHardening(asked: ContainerCreateBody, seen: ContainerHardening): string[] {
  const host = asked.HostConfig;
  const ignored: string[] = [];
  const expect = (field: string, wanted: unknown, got: unknown) => {
    if (got !== wanted) ignored.push(`${field} ${JSON.stringify(wanted)} came back as ${got === undefined ? 'nothing' : JSON.stringify(got)}`);
  };
  if (host.Runtime) expect('Runtime', host.Runtime, seen.runtime);
  expect('User', asked.User, seen.user);
  expect('ReadonlyRootfs', host.ReadonlyRootfs, seen.readonlyRootfs);
  expect('NetworkMode', host.NetworkMode, seen.networkMode);
  expect('PidsLimit', host.PidsLimit, seen.pidsLimit);
  expect('Memory', host.Memory, seen.memory);
  expect('MemorySwap', host.MemorySwap, seen.memorySwap);
  if (seen.privileged === true) ignored.push('Privileged false came back as true');
  expect('Init', host.Init, seen.init);
  if (seen.binds.length) ignored.push(`Binds holds ${seen.binds.length} host path(s), which asp did not ask for`);
  if (seen.devices) ignored.push(`Devices holds ${seen.devices} device(s), which asp did not ask for`);
  const mounts = seen.mounts.map((mount) => `${mount.type}:${mount.target}`).sort();
  const askedMounts = host.Mounts.map((mount) => `${mount.Type}:${mount.Target}`).sort();
  if (mounts.join(',') !== askedMounts.join(',')) ignored.push(`Mounts ${askedMounts.join(',')} came back as ${mounts.join(',') || 'nothing'}`);
  const dropped = new Set(seen.capDrop.map(capName));
  for (const cap of host.CapDrop.map(capName)) if (!dropped.has(cap)) ignored.push(`CapDrop ${cap} is missing`);
  const allowed = new Set(host.CapAdd.map(capName));
  for (const cap of seen.capAdd.map(capName)) if (!allowed.has(cap)) ignored.push(`CapAdd holds ${cap}, which asp did not ask for`);
  for (const option of host.SecurityOpt) {
    const name = option.split('=')[0] ?? option;
    if (!seen.securityOpt.includes(option)) ignored.push(`SecurityOpt ${name} is missing`);
  }
  return ignored;
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
 * Whether the daemon can run the runtime asked for, hardened: it must be registered, and gVisor must load the
 * container's seccomp profile (runsc ignores it without --oci-seccomp, and asp's profile would silently not apply).
 */
export function checkRuntime(runtime: string | undefined, info: DaemonInfo): void {
  if (!runtime) return;
  if (!info.runtimes.includes(runtime)) {
    throw new AspError(
      'RUNTIME_UNAVAILABLE',
      `the Docker daemon has no runtime "${runtime}" (it has: ${info.runtimes.join(', ') || 'none listed'})`,
      isGvisor(runtime) ? 'install that runtime in the daemon or drop --runtime (README: gVisor)' : 'install that runtime in the daemon or drop --runtime',
    );
  }
  const args = info.runtimeArgs?.[runtime] ?? [];
  if (isGvisor(runtime) && !args.some((arg) => /^--?oci-seccomp(=true)?$/.test(arg))) {
    throw new AspError(
      'RUNTIME_UNAVAILABLE',
      `the runtime "${runtime}" is registered without --oci-seccomp, so gVisor would not apply asp's seccomp profile`,
      `add "--oci-seccomp" to its runtimeArgs in /etc/docker/daemon.json and reload dockerd (README: gVisor)`,
    );
  }
}

