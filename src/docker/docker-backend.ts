import type { Readable } from 'node:stream';
import { AspError } from '../core/asp-error.js';
import type { CleanupScope } from '../core/cleanup-stack.js';
import { retry } from '../core/retry.js';
import {
  sandboxName,
  type EngineInfo,
  type ImageRequest,
  type OwnedObject,
  type PreparedImage,
  type Sandbox,
  type SandboxBackend,
  type SandboxRequest,
  type SandboxStreams,
  type WarmSandboxes,
  warmNames,
} from '../backend/sandbox-backend.js';
import { LABEL } from '../backend/ownership-labels.js';
import { SANDBOX_ARTIFACTS_DIR } from '../protocol/messages.js';
import { containerSpec } from './container-spec.js';
import { createHardenedContainer } from './hardened-container.js';
import type { DockerPort } from './port.js';
import { ensureRuntimeVolume, pruneRuntimeVolumes } from './runtime-volume.js';
import { DockerWarmSandboxes } from './warm-sandboxes.js';
import { ASP_IMAGE_KIND, ASP_IMAGE_LABEL, ensureSandboxImage, imageContext } from './sandbox-image.js';

/** How often a volume still mounted (409) is retried: its container's removal may be finishing elsewhere. */
const IN_USE_RETRIES = 3;
const IN_USE_BACKOFF_MS = 250;

/**
 * The sandbox backend on a Docker Engine (or a Docker-compatible one): a sandbox is a hardened container with its
 * workspace on a named volume, the protocol runs over the container's attach stream. Everything Docker-shaped
 * (create bodies, inspect, archives, 404 and 409) stays behind this class and the port under it.
 */
export class DockerBackend implements SandboxBackend {
  readonly name = 'docker';
  readonly sandboxKind = 'container';
  /** For each image prepared: its id, and when it is not asp's own image, the asp image whose runtime its sandboxes mount. */
  private readonly prepared = new Map<string, { id: string | undefined; runtimeOf: string | undefined }>();

  readonly warm: WarmSandboxes;

  constructor(private readonly docker: DockerPort) {
    this.warm = new DockerWarmSandboxes(
      docker,
      async (image) => {
        const runtimeOf = this.prepared.get(image)?.runtimeOf;
        return runtimeOf ? ensureRuntimeVolume(docker, runtimeOf) : undefined;
      },
      (container, options) => new DockerSandbox(docker, container, options.started),
    );
  }

  describe(): Promise<EngineInfo> {
    return this.docker.info();
  }

  ping(): Promise<void> {
    return this.docker.ping();
  }

  /**
   * asp's own image (or one built on it, `asp image build`) carries the runner. Any other image gets it from the
   * runtime volume of asp's image, made once per daemon: asp's image is prepared for that too.
   */
  async prepareImage(request: ImageRequest): Promise<PreparedImage> {
    const image = await ensureSandboxImage(this.docker, request);
    const known = this.prepared.get(image);
    if (known) return { ref: image, id: known.id };
    const [summary, info] = await Promise.all([this.docker.inspectImage(image), this.docker.info()]);
    const id = summary?.id;
    if (summary?.architecture && info.arch && summary.architecture !== info.arch) {
      throw new AspError(
        'BAD_INPUT',
        `image ${image} is built for ${summary.os ?? 'linux'}/${summary.architecture}, the Docker daemon runs ${info.os}/${info.arch}`,
        `use an image for ${info.arch}, or leave out --image`,
      );
    }
    if (!request.image || summary?.labels[ASP_IMAGE_LABEL] === ASP_IMAGE_KIND) {
      this.prepared.set(image, { id, runtimeOf: undefined });
      return { ref: image, id };
    }
    const own = await ensureSandboxImage(this.docker, { onBuildStart: request.onBuildStart, onProgress: request.onProgress });
    await ensureRuntimeVolume(this.docker, own);
    this.prepared.set(image, { id, runtimeOf: own });
    return { ref: image, id };
  }

  async createSandbox(request: SandboxRequest, scope: CleanupScope): Promise<Sandbox> {
    const { docker } = this;
    // The run id is part of both names: a rerun of the same task id must never adopt the volume of a run that died.
    const volume = request.role === 'check' ? `asp-ck-${request.taskId}-${request.runId}` : `asp-ws-${request.taskId}-${request.runId}`;
    const name = sandboxName(request);
    // Asked again for each sandbox (one inspect): a runtime removed since prepareImage is made again, not mounted empty.
    const runtimeOf = this.prepared.get(request.image)?.runtimeOf;
    const runnerRuntime = runtimeOf ? await ensureRuntimeVolume(docker, runtimeOf) : undefined;
    await docker.createVolume(volume, request.labels);
    // Deferred first, so undone last: a volume a container still mounts cannot be removed.
    scope.defer(`volume ${volume}`, () => docker.removeVolume(volume), { keepable: true });
    const id = await createHardenedContainer(
      docker,
      containerSpec({
        name,
        image: request.image,
        volume,
        labels: request.labels,
        limits: request.limits,
        allowedEnv: request.env,
        runtime: request.runtime,
        checkDir: request.checkDir,
        runnerRuntime,
      }),
    );
    scope.defer(`container ${name}`, () => docker.removeContainer(id), { keepable: true });
    return new DockerSandbox(docker, id);
  }

  removeStaleRuntimes(options: { dryRun: boolean }): Promise<string[]> {
    return pruneRuntimeVolumes(this.docker, imageContext().tag, options);
  }

  async listOwned(labelFilters: string[]): Promise<OwnedObject[]> {
    const [containers, volumes] = await Promise.all([this.docker.listContainers(labelFilters), this.docker.listVolumes(labelFilters)]);
    return [
      ...containers.map((container): OwnedObject => ({ kind: 'sandbox', ref: container.id, name: container.name, labels: container.labels, createdAt: container.createdAt })),
      ...volumes.map((volume): OwnedObject => ({ kind: 'workspace', ref: volume.name, name: volume.name, labels: volume.labels, createdAt: volume.createdAt })),
    ];
  }

  async removeOwned(object: OwnedObject): Promise<void> {
    const seq = object.labels[LABEL.poolSandbox];
    if (object.kind === 'sandbox' && seq && object.name === warmNames(seq).ready) {
      // A ready warm sandbox goes through the rename a claim would win: never one a task claimed meanwhile.
      if (!(await this.warm.retire({ seq, pool: object.labels[LABEL.pool] ?? '' }))) {
        throw new AspError('DOCKER_CONFLICT', `${object.name} was claimed by a task meanwhile`, 'it is the task’s now: it goes when the task ends');
      }
      return;
    }
    if (object.kind === 'sandbox') return this.docker.removeContainer(object.ref);
    const { answer: failure } = await retry(
      () =>
        this.docker.removeVolume(object.ref).then(
          () => undefined,
          (error: unknown) => ({ error }),
        ),
      {
        attempts: IN_USE_RETRIES + 1,
        retryable: (failed) => failed !== undefined && failed.error instanceof AspError && failed.error.code === 'DOCKER_CONFLICT',
        delayMs: (attempt) => IN_USE_BACKOFF_MS * attempt,
      },
    );
    if (failure) throw failure.error;
  }
}

/** A sandbox for a container made some other way (tests that make a container asp would refuse to). */
export function dockerSandbox(docker: DockerPort, containerId: string): Sandbox {
  return new DockerSandbox(docker, containerId);
}

class DockerSandbox implements Sandbox {
  /** A warm sandbox's Env holds no task's values: they come over the protocol, as on Kubernetes. */
  readonly envOverProtocol: boolean;
  /** A forced removal stops a container at once, and its volume stays readable until then. */
  readonly endsAtTaskEnd = true;

  constructor(
    private readonly docker: DockerPort,
    readonly id: string,
    /** Started before its task was known (warm): its runner waits for the first input, so attaching is all. */
    private readonly started = false,
  ) {
    this.envOverProtocol = started;
  }

  async open(): Promise<SandboxStreams> {
    // Attach before start: a container's first output goes to whoever is attached when it is written.
    const streams = await this.docker.attach(this.id);
    if (this.started) return streams;
    try {
      await this.docker.start(this.id);
    } catch (error) {
      streams.stdout.destroy();
      streams.stderr.destroy();
      streams.stdin.destroy();
      throw error;
    }
    return streams;
  }

  wait(): Promise<number> {
    return this.docker.wait(this.id);
  }

  oomKilled(): Promise<boolean | undefined> {
    return this.docker.oomKilled(this.id);
  }

  kill(): Promise<void> {
    return this.docker.kill(this.id);
  }

  async fetchArtifacts(): Promise<Readable | undefined> {
    return this.docker.getArchive(this.id, SANDBOX_ARTIFACTS_DIR).catch((error: unknown) => {
      // A sandbox that stopped before its workspace was unpacked has no .asp/: nothing to copy is not a failure.
      if (error instanceof AspError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    });
  }
}
