import { AspError } from '../core/asp-error.js';
import type { ContainerCreateBody, ContainerHardening, DockerPort } from './port.js';

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
  if (seen.capDrop) {
    const dropped = new Set(seen.capDrop.map(capName));
    for (const cap of host.CapDrop.map(capName)) if (!dropped.has(cap)) ignored.push(`CapDrop ${cap} is missing`);
  }
  const allowed = new Set(host.CapAdd.map(capName));
  for (const cap of seen.capAdd.map(capName)) if (!allowed.has(cap)) ignored.push(`CapAdd holds ${cap}, which asp did not ask for`);
  for (const option of host.SecurityOpt) {
    const name = option.split('=')[0] ?? option;
    if (!seen.securityOpt.includes(option)) ignored.push(`SecurityOpt ${name} is missing`);
  }
  return ignored;
}
