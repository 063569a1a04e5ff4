import { describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import { CleanupStack } from '../../src/core/cleanup-stack.js';
import { limitsSchema } from '../../src/config/task-spec.js';
import { DockerBackend } from '../../src/docker/docker-backend.js';
import type { ContainerCreateBody, DaemonInfo, DockerPort, ImageSummary } from '../../src/docker/port.js';
import { runtimeVolumeName } from '../../src/docker/runtime-volume.js';
import { imageContext } from '../../src/docker/sandbox-image.js';

/** A daemon that has every image asked for, with the given summaries, and records what asp makes on it. */
function daemon(images: Record<string, ImageSummary>, arch = 'amd64', volumes = new Map<string, Record<string, string>>()) {
  const calls: string[] = [];
  const created: ContainerCreateBody[] = [];
  const info: DaemonInfo = { endpoint: 'unix:///fake.sock', serverVersion: '20.10', apiVersion: '1.41', os: 'linux', arch, runtimes: ['runc'] };
  const port: Partial<DockerPort> = {
    info: () => Promise.resolve(info),
    imageExists: () => Promise.resolve(true),
    inspectImage: (tag) => Promise.resolve(images[tag]),
    listVolumes: () => Promise.resolve([]),
    inspectVolume: (name) => {
      const labels = volumes.get(name);
      return Promise.resolve(labels ? { name, labels, createdAt: undefined } : undefined);
    },
    createVolume: (name, labels) => (calls.push(`create volume ${name}`), volumes.set(name, labels), Promise.resolve()),
    createContainer: (body) => (calls.push(`create container ${body.name}`), created.push(body), Promise.resolve(`id-${created.length}`)),
    // What the daemon reports back is what asp asked for: the post-create check passes.
    inspectContainer: (id) => {
      const body = created[Number(id.slice(3)) - 1] as ContainerCreateBody;
      const host = body.HostConfig;
      return Promise.resolve({
        user: body.User,
        runtime: host.Runtime,
        readonlyRootfs: host.ReadonlyRootfs,
        capDrop: host.CapDrop,
        capAdd: host.CapAdd,
        securityOpt: host.SecurityOpt,
        networkMode: host.NetworkMode,
        pidsLimit: host.PidsLimit,
        memory: host.Memory,
        memorySwap: host.MemorySwap,
        privileged: host.Privileged,
        init: host.Init,
        binds: [],
        devices: 0,
        mounts: host.Mounts.map((mount) => ({ type: mount.Type, target: mount.Target })),
      });
    },
    removeContainer: (id) => (calls.push(`remove container ${id}`), Promise.resolve()),
    removeVolume: (name) => (calls.push(`remove volume ${name}`), Promise.resolve()),
  };
  // Anything else asp calls here is a mistake of the test's world, said loudly.
  const strict = new Proxy(port, {
    get: (target, name) => (name in target ? target[name as keyof DockerPort] : name === 'then' ? undefined : () => Promise.reject(new Error(`unexpected ${String(name)}`))),
  });
  return { port: strict as DockerPort, calls, created };
}

const request = (image: string) => ({ taskId: 't1', runId: 'r1', role: 'task' as const, image, labels: {}, limits: limitsSchema.parse({}), env: {}, runtime: undefined, checkDir: false });
const own = imageContext().tag;

describe('the Docker backend, image by image', () => {
  it("runs asp's own image (and one built on it) with the runner it carries: no runtime volume", async () => {
    const { port, calls, created } = daemon({ 'team/baked:1': { id: 'sha256:b', architecture: 'amd64', os: 'linux', labels: { 'asp.image': 'sandbox' } } });
    const backend = new DockerBackend(port);
    expect(await backend.prepareImage({ image: 'team/baked:1' })).toEqual({ ref: 'team/baked:1', id: 'sha256:b' });
    await backend.createSandbox(request('team/baked:1'), new CleanupStack());
    expect(calls.filter((call) => call.includes('runtime'))).toEqual([]);
    expect(created[0]?.Cmd).toEqual(['node', '/opt/asp/sandbox/asp-sandbox.cjs']);
  });

  it("fills the runtime volume once from asp's image for any other image, and mounts it read-only", async () => {
    const { port, calls, created } = daemon({
      'python:3.12': { id: 'sha256:p', architecture: 'amd64', os: 'linux', labels: {} },
      'busybox:1': { id: 'sha256:x', architecture: 'amd64', os: 'linux', labels: {} },
    });
    const backend = new DockerBackend(port);
    await backend.prepareImage({ image: 'python:3.12' });
    await backend.prepareImage({ image: 'busybox:1' });
    const volume = runtimeVolumeName(own);
    // One volume, filled by a container of asp's image that is created (the daemon copies the image's runtime into
    // the empty volume then) and removed without ever starting.
    expect(calls).toEqual([`create volume ${volume}`, expect.stringMatching(/^create container asp-runtime-fill-/), 'remove container id-1']);
    expect(created[0]?.Image).toBe(own);
    expect(created[0]?.HostConfig.Mounts).toEqual([{ Type: 'volume', Source: volume, Target: '/opt/asp-runtime', ReadOnly: false }]);
    await backend.createSandbox(request('python:3.12'), new CleanupStack());
    expect(created[1]?.HostConfig.Mounts[1]).toEqual({ Type: 'volume', Source: volume, Target: '/opt/asp', ReadOnly: true, VolumeOptions: { NoCopy: true } });
  });

  it('asks for the runtime volume again before each sandbox, and makes it again when it went since', async () => {
    const volumes = new Map<string, Record<string, string>>();
    const { port, calls } = daemon({ 'python:3.12': { id: 'sha256:p', architecture: 'amd64', os: 'linux', labels: {} } }, 'amd64', volumes);
    const backend = new DockerBackend(port);
    await backend.prepareImage({ image: 'python:3.12' });
    const volume = runtimeVolumeName(own);
    volumes.delete(volume);
    calls.length = 0;
    await backend.createSandbox(request('python:3.12'), new CleanupStack());
    expect(calls.slice(0, 3)).toEqual([`create volume ${volume}`, expect.stringMatching(/^create container asp-runtime-fill-/), 'remove container id-2']);
    expect(volumes.get(volume)).toEqual({ 'asp.runtime': volume.slice('asp-runtime-'.length), 'asp.kind': 'runtime' });
  });

  it("never uses, fills or removes a volume of the runtime's name that lacks its label: DOCKER_CONFLICT saying to remove it", async () => {
    const volume = runtimeVolumeName(own);
    const { port, calls } = daemon({ 'python:3.12': { id: 'sha256:p', architecture: 'amd64', os: 'linux', labels: {} } }, 'amd64', new Map([[volume, { owner: 'someone' }]]));
    const failure = await new DockerBackend(port).prepareImage({ image: 'python:3.12' }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'DOCKER_CONFLICT', message: `volume ${volume} is not asp's runtime (it has no asp.runtime=${volume.slice('asp-runtime-'.length)} label)` });
    expect(calls).toEqual([]);
  });

  it("refuses an image built for another architecture than the daemon's, as bad input", async () => {
    const { port, calls } = daemon({ 'arm/only:1': { id: 'sha256:a', architecture: 'arm64', os: 'linux', labels: {} } });
    const failure = await new DockerBackend(port).prepareImage({ image: 'arm/only:1' }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(AspError);
    expect(failure).toMatchObject({ code: 'BAD_INPUT', message: 'image arm/only:1 is built for linux/arm64, the Docker daemon runs linux/amd64' });
    expect(calls).toEqual([]);
  });
});
