import { PassThrough, type Readable, type Writable } from 'node:stream';
import Docker from 'dockerode';
import { AspError, errorMessage } from '../asp-error.js';
import type {
  AttachedStreams,
  ContainerCreateBody,
  ContainerSummary,
  DaemonInfo,
  DockerPort,
  VolumeSummary,
} from './port.js';

/** The one place that imports dockerode. It translates daemon errors into AspErrors with a hint. */
export class DockerodeAdapter implements DockerPort {
  private readonly docker: Docker;
  private readonly endpoint: string;

  constructor(dockerHost?: string) {
    // dockerode reads DOCKER_HOST itself when given no options; we pass it explicitly so settings stay the only env reader.
    this.docker = dockerHost ? new Docker(connectionOptions(dockerHost)) : new Docker({ socketPath: '/var/run/docker.sock' });
    this.endpoint = dockerHost ?? 'unix:///var/run/docker.sock';
  }

  private daemonInfo: Promise<DaemonInfo> | undefined;

  /** Asked once per process (a batch asks per task); a failed answer is not kept. */
  info(): Promise<DaemonInfo> {
    this.daemonInfo ??= this.readInfo().catch((error: unknown) => {
      this.daemonInfo = undefined;
      throw error;
    });
    return this.daemonInfo;
  }

  private async readInfo(): Promise<DaemonInfo> {
    const [version, info] = await this.call('reach the Docker daemon', () =>
      Promise.all([this.docker.version(), this.docker.info() as Promise<Record<string, unknown>>]),
    );
    return {
      endpoint: this.endpoint,
      serverVersion: version.Version,
      apiVersion: version.ApiVersion,
      os: version.Os,
      arch: version.Arch,
      runtimes: Object.keys((info.Runtimes as Record<string, unknown> | undefined) ?? {}),
      cpus: Number(info.NCPU) || undefined,
      memoryBytes: Number(info.MemTotal) || undefined,
    };
  }

  async imageExists(tag: string): Promise<boolean> {
    try {
      await this.docker.getImage(tag).inspect();
      return true;
    } catch (error) {
      if (statusOf(error) === 404) return false;
      throw this.translate(error, `inspect image ${tag}`);
    }
  }

  async buildImage(
    context: Readable,
    options: { tag: string; buildArgs: Record<string, string>; labels: Record<string, string> },
    onProgress: (line: string) => void,
  ): Promise<void> {
    const stream = await this.call(`build image ${options.tag}`, () =>
      this.docker.buildImage(context, {
        t: options.tag,
        buildargs: options.buildArgs,
        labels: options.labels,
        rm: true,
        forcerm: true,
        // No registry is reachable from most places asp runs: use the local base image.
        pull: undefined,
      } as Docker.ImageBuildOptions),
    );
    await new Promise<void>((resolve, reject) => {
      this.docker.modem.followProgress(
        stream,
        (error: Error | null, output: Array<{ error?: string; errorDetail?: { message?: string } }>) => {
          const failed = output?.find((entry) => entry.error);
          if (error || failed) {
            const message = failed?.errorDetail?.message ?? failed?.error ?? errorMessage(error);
            reject(new AspError('IMAGE_UNAVAILABLE', `building ${options.tag} failed: ${message.trim()}`, 'check that the base image is present (docker images) or pass --image'));
          } else resolve();
        },
        (event: { stream?: string }) => {
          const line = event.stream?.trim();
          if (line) onProgress(line);
        },
      );
    });
  }

  async createVolume(name: string, labels: Record<string, string>): Promise<void> {
    await this.call(`create volume ${name}`, () => this.docker.createVolume({ Name: name, Labels: labels }));
  }

  async removeVolume(name: string): Promise<void> {
    try {
      await this.docker.getVolume(name).remove({ force: true });
    } catch (error) {
      if (statusOf(error) === 404) return;
      // 409: still mounted by a container (perhaps one whose removal is in progress); the caller decides whether to retry.
      if (statusOf(error) === 409) {
        throw new AspError('DOCKER_CONFLICT', `cannot remove volume ${name}: ${daemonMessage(error)}`, 'remove the container that uses it first (asp reap does)', { cause: error });
      }
      throw this.translate(error, `remove volume ${name}`);
    }
  }

  async listVolumes(labelFilters: string[]): Promise<VolumeSummary[]> {
    const result = await this.call('list volumes', () => this.docker.listVolumes({ filters: { label: labelFilters } }));
    return (result.Volumes ?? []).map((volume) => ({ name: volume.Name, labels: volume.Labels ?? {}, createdAt: volumeCreatedAt(volume) }));
  }

  async createContainer(body: ContainerCreateBody): Promise<string> {
    const container = await this.call(`create container ${body.name}`, () =>
      this.docker.createContainer(body as unknown as Docker.ContainerCreateOptions),
    );
    return container.id;
  }

  async getArchive(containerId: string, path: string): Promise<Readable> {
    return this.call(`copy ${path} out of the container`, () =>
      this.docker.getContainer(containerId).getArchive({ path }) as Promise<Readable>,
    );
  }

  async attach(containerId: string): Promise<AttachedStreams> {
    // stdin needs a hijacked (two-way) connection.
    const stream = (await this.call('attach to the container', () =>
      this.docker.getContainer(containerId).attach({ stream: true, stdin: true, stdout: true, stderr: true, logs: false, hijack: true }),
    )) as NodeJS.ReadWriteStream;
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    // Tty is false, so the stream is multiplexed; demux it into two plain streams.
    this.docker.modem.demuxStream(stream, stdout, stderr);
    const finish = () => {
      stdout.end();
      stderr.end();
    };
    stream.on('end', finish);
    stream.on('close', finish);
    stream.on('error', finish);
    return { stdout, stderr, stdin: stream as unknown as Writable };
  }

  async start(containerId: string): Promise<void> {
    await this.call('start the container', () => this.docker.getContainer(containerId).start());
  }

  async wait(containerId: string): Promise<number> {
    const result = (await this.call('wait for the container', () => this.docker.getContainer(containerId).wait())) as {
      StatusCode: number;
    };
    return result.StatusCode;
  }

  async kill(containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).kill({ signal: 'SIGKILL' });
    } catch (error) {
      // 404: gone; 409: not running. Both mean there is nothing left to kill.
      if (statusOf(error) === 404 || statusOf(error) === 409) return;
      throw this.translate(error, 'kill the container');
    }
  }

  async removeContainer(containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).remove({ force: true, v: true });
    } catch (error) {
      // 404: already gone; 409 "removal already in progress": someone else is removing it.
      if (statusOf(error) === 404 || statusOf(error) === 409) return;
      throw this.translate(error, 'remove the container');
    }
  }

  async listContainers(labelFilters: string[]): Promise<ContainerSummary[]> {
    const containers = await this.call('list containers', () =>
      this.docker.listContainers({ all: true, filters: { label: labelFilters } }),
    );
    return containers.map((container) => ({
      id: container.Id,
      name: (container.Names?.[0] ?? '').replace(/^\//, ''),
      state: container.State,
      labels: container.Labels ?? {},
      createdAt: new Date(container.Created * 1000),
    }));
  }

  private async call<T>(what: string, action: () => Promise<T>): Promise<T> {
    try {
      return await action();
    } catch (error) {
      throw this.translate(error, what);
    }
  }

  private translate(error: unknown, what: string): AspError {
    if (error instanceof AspError) return error;
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT') {
      return new AspError(
        'DOCKER_UNAVAILABLE',
        `cannot ${what}: Docker at ${this.endpoint} does not answer (${code})`,
        'start the Docker daemon, or point DOCKER_HOST at one; `asp doctor` checks',
        { cause: error },
      );
    }
    const status = statusOf(error);
    const detail = daemonMessage(error);
    if (status === 404 && /image/i.test(detail)) {
      return new AspError('IMAGE_UNAVAILABLE', `cannot ${what}: ${detail}`, 'run `asp image build`, or pass --image with an image that exists', { cause: error });
    }
    if (/unknown (or invalid )?runtime/i.test(detail)) {
      return new AspError('RUNTIME_UNAVAILABLE', `cannot ${what}: ${detail}`, 'install that runtime in the daemon or drop --runtime', { cause: error });
    }
    return new AspError('DOCKER_FAILED', `cannot ${what}: ${detail}`, 'see the Docker daemon log; rerun with --debug for details', { cause: error });
  }
}

function volumeCreatedAt(volume: Docker.VolumeInspectInfo): Date | undefined {
  // CreatedAt is in the Engine API since 1.30 but missing from the dockerode typings.
  const text = (volume as { CreatedAt?: unknown }).CreatedAt;
  const date = typeof text === 'string' ? new Date(text) : undefined;
  return date && !Number.isNaN(date.getTime()) ? date : undefined;
}

function statusOf(error: unknown): number | undefined {
  return (error as { statusCode?: number } | undefined)?.statusCode;
}

function daemonMessage(error: unknown): string {
  const json = (error as { json?: { message?: string } } | undefined)?.json;
  const message = json?.message ?? errorMessage(error);
  return message.replace(/^\(HTTP code \d+\)\s*[^-]*-\s*/, '').trim();
}

function connectionOptions(dockerHost: string): Docker.DockerOptions {
  if (dockerHost.startsWith('unix://')) return { socketPath: dockerHost.slice('unix://'.length) };
  const url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
  return { host: url.hostname, port: Number(url.port || 2375), protocol: url.protocol === 'https:' ? 'https' : 'http' };
}
