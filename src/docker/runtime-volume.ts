import type { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { z } from 'zod';
import { limitsSchema, parseJsonWith } from '../config/task-spec.js';
import { AspError } from '../core/asp-error.js';
import { containerSpec } from './container-spec.js';
import type { ContainerCreateBody, DockerPort } from './port.js';

/** Where asp's own image holds the runtime it was built with (Dockerfile: asp-runtime-pack). */
const RUNTIME_IN_IMAGE = '/opt/asp-runtime';
/**
 * The runtime's labels. Not asp.managed: it belongs to no task and no run, so neither the reaper's task rules nor
 * the leak checks apply to it; it is asp's own shared object, one per asp image, replaced when asp's image changes
 * (`pruneRuntimeVolumes`), never removed while a sandbox mounts it (the daemon refuses).
 */
const RUNTIME_LABEL = 'asp.runtime';

/** Runtime volumes being made, per port: the tasks of a batch that start together wait for one fill, not one each. */
const making = new WeakMap<DockerPort, Map<string, Promise<string>>>();

/**
 * The runtime volume of asp's image `aspImage` (asp-sandbox:<hash>), made when missing. Docker copies an image's
 * content into an empty named volume when a container that mounts it is created: a container of asp's image,
 * created and never started, fills the volume with the runtime the image was built with, and goes. That works on
 * a remote daemon (nothing comes from the host's file system) and needs no registry.
 *
 * Asked before every sandbox that mounts it (one inspect), not once per process: a runtime removed in the middle
 * of a batch is made again, rather than Docker making an empty volume of that name when the next sandbox mounts it.
 * A volume of that name that is not asp's runtime is never used, filled or removed: the caller is told to remove it.
 */
export async function ensureRuntimeVolume(docker: DockerPort, aspImage: string): Promise<string> {
  let perDaemon = making.get(docker);
  if (!perDaemon) making.set(docker, (perDaemon = new Map<string, Promise<string>>()));
  const inFlight = perDaemon.get(aspImage);
  if (inFlight) return inFlight;
  const name = runtimeVolumeName(aspImage);
  if ((await runtimeVolumeState(docker, aspImage)) === 'ready') return name;
  const again = perDaemon.get(aspImage);
  if (again) return again;
  const made = makeRuntimeVolume(docker, aspImage).finally(() => perDaemon.delete(aspImage));
  perDaemon.set(aspImage, made);
  return made;
}

async function makeRuntimeVolume(docker: DockerPort, aspImage: string): Promise<string> {
  const name = runtimeVolumeName(aspImage);
  await docker.createVolume(name, runtimeLabels(aspImage));
  const filler = await createUnstarted(docker, aspImage, 'fill', { Type: 'volume', Source: name, Target: RUNTIME_IN_IMAGE, ReadOnly: false });
  await docker.removeContainer(filler);
  return name;
}

/**
 * Whether the runtime volume of `aspImage` is there ('ready') or not ('missing'); a volume of its name without the
 * runtime's labels (someone's own, or an empty one Docker made for a sandbox that mounted a removed runtime) is an
 * error that says to remove it.
 */
async function runtimeVolumeState(docker: DockerPort, aspImage: string): Promise<'ready' | 'missing'> {
  const name = runtimeVolumeName(aspImage);
  const volume = await docker.inspectVolume(name);
  if (!volume) return 'missing';
  if (volume.labels[RUNTIME_LABEL] === runtimeVersion(aspImage)) return 'ready';
  throw new AspError(
    'DOCKER_CONFLICT',
    `volume ${name} is not asp's runtime (it has no ${RUNTIME_LABEL}=${runtimeVersion(aspImage)} label)`,
    `remove it (docker volume rm ${name}) and asp makes its runtime again`,
  );
}

/** The runtime's version is the hash of asp's image: the same runner bundle, built into the same runtime. */
export function runtimeVersion(aspImage: string): string {
  return aspImage.slice(aspImage.lastIndexOf(':') + 1);
}

/** The volume that holds the runtime of asp's image `aspImage`. */
export function runtimeVolumeName(aspImage: string): string {
  return `asp-runtime-${runtimeVersion(aspImage)}`;
}

function runtimeLabels(aspImage: string): Record<string, string> {
  return { [RUNTIME_LABEL]: runtimeVersion(aspImage), 'asp.kind': 'runtime' };
}

/**
 * A container of asp's image, hardened as every sandbox and never started, that mounts the runtime volume as
 * `mount` says: Docker fills an empty volume when it is created, and reads files only out of containers.
 */
function createUnstarted(docker: DockerPort, aspImage: string, purpose: string, mount: ContainerCreateBody['HostConfig']['Mounts'][number]): Promise<string> {
  const spec = containerSpec({
    name: `asp-runtime-${purpose}-${runtimeVersion(aspImage)}-${process.pid}`,
    image: aspImage,
    volume: mount.Source,
    labels: runtimeLabels(aspImage),
    limits: limitsSchema.parse({}),
    allowedEnv: {},
  });
  return docker.createContainer({ ...spec, HostConfig: { ...spec.HostConfig, Mounts: [mount] } });
}

/** Removes the runtime volumes of other asp images; one a sandbox still mounts is left (the daemon refuses). */
export async function pruneRuntimeVolumes(docker: DockerPort, currentAspImage: string, options: { dryRun: boolean }): Promise<string[]> {
  const current = runtimeVersion(currentAspImage);
  const removed: string[] = [];
  for (const volume of await docker.listVolumes([RUNTIME_LABEL])) {
    if (volume.labels[RUNTIME_LABEL] === current) continue;
    if (options.dryRun) {
      removed.push(volume.name);
      continue;
    }
    const gone = await docker.removeVolume(volume.name).then(
      () => true,
      () => false,
    );
    if (gone) removed.push(volume.name);
  }
  return removed;
}

const manifestSchema = z.object({ schema: z.literal('asp.runtime/v1'), version: z.string(), arch: z.string(), files: z.number().int().min(0), bytes: z.number().int().min(0) });

/** What `asp doctor` says of the runtime: its volume, and the manifest the packer wrote last (its presence means it is whole). */
export interface RuntimeState {
  volume: string;
  manifest: z.infer<typeof manifestSchema> | undefined;
}

/**
 * The runtime volume of asp's image and its manifest, read through a container that mounts it and is never
 * started (the Engine API reads files only out of containers); undefined when the volume is not there yet.
 */
export async function describeRuntimeVolume(docker: DockerPort, aspImage: string): Promise<RuntimeState | undefined> {
  const volume = runtimeVolumeName(aspImage);
  if ((await runtimeVolumeState(docker, aspImage)) === 'missing') return undefined;
  const reader = await createUnstarted(docker, aspImage, 'read', { Type: 'volume', Source: volume, Target: '/opt/asp-read', ReadOnly: true, VolumeOptions: { NoCopy: true } });
  try {
    const archive = await docker.getArchive(reader, '/opt/asp-read/runtime.json').catch(() => undefined);
    if (!archive) return { volume, manifest: undefined };
    const text = await firstFileOf(archive);
    const parsed = text === undefined ? undefined : parseJsonWith(text, manifestSchema);
    return { volume, manifest: parsed && 'value' in parsed ? parsed.value : undefined };
  } finally {
    await docker.removeContainer(reader);
  }
}

/** The content of the first regular file of a tar (at most 64 KiB: a manifest is small). */
function firstFileOf(archive: Readable): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const extract = tarStream.extract();
    let found: string | undefined;
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (chunk: unknown) => {
        const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
        size += bytes.length;
        if (size <= 64 * 1024) chunks.push(bytes);
      });
      stream.on('end', () => {
        if (found === undefined && header.type === 'file' && size <= 64 * 1024) found = Buffer.concat(chunks).toString('utf8');
        next();
      });
      stream.resume();
    });
    extract.on('finish', () => resolve(found));
    extract.on('error', reject);
    archive.on('error', reject);
    archive.pipe(extract);
  });
}
