import { PassThrough, type Readable, type Writable } from 'node:stream';
import { z } from 'zod';
import { describeIssue } from '../config/task-spec.js';
import { AspError, errorMessage, systemErrorCode } from '../core/asp-error.js';
import { valueAt } from '../core/record-guard.js';
import { demultiplex, EngineApiError, EngineClient, engineTarget, type Query } from './engine-client.js';
import type { AttachedStreams, ContainerHardening, ContainerCreateBody, ContainerSummary, DaemonInfo, DockerPort, ImageSummary, VolumeSummary } from './port.js';

// The answers asp reads, each only as far as it relies on them (zod drops the rest). `.nullish()` where the code below
// already takes null for "none": the daemon sends `null` for an empty list or map.
const labelsReply = z.record(z.string(), z.string()).nullish();
const versionReply = z.object({ Version: z.string(), ApiVersion: z.string(), Os: z.string(), Arch: z.string() });
// NCPU and MemTotal are left to readInfo, which reads them with Number() and takes 0 or NaN as "not said".
const infoReply = z.object({ Runtimes: z.record(z.string(), z.unknown()).nullish(), NCPU: z.unknown(), MemTotal: z.unknown() });
const volumeReply = z.object({ Name: z.string(), Labels: labelsReply, CreatedAt: z.string().nullish() });
const volumesReply = z.object({ Volumes: z.array(volumeReply).nullish() });
const createdReply = z.object({ Id: z.string() });
// Inspect is read field by field, each checked for its type where it is read (inspectContainer).
const inspectReply = z.object({ Config: z.object({ User: z.unknown() }).nullish(), HostConfig: z.record(z.string(), z.unknown()).nullish() });
const waitReply = z.object({ StatusCode: z.number() });
const imageReply = z.object({ Id: z.string(), Architecture: z.string().nullish(), Os: z.string().nullish(), Config: z.object({ Labels: labelsReply }).nullish() });
const containersReply = z.array(z.object({ Id: z.string(), Names: z.array(z.string()).nullish(), State: z.string(), Labels: labelsReply, Created: z.number() }));
/** One line of build progress: output in `stream`, a failure in `error`/`errorDetail`. */
const buildEvent = z.object({ stream: z.string().optional(), error: z.string().optional(), errorDetail: z.object({ message: z.string().optional() }).optional() });

/** The one place that speaks the Docker Engine API. It translates daemon errors into AspErrors with a hint. */
export class EngineAdapter implements DockerPort {
  private readonly engine: EngineClient;
  private readonly endpoint: string;
  private daemonInfo: Promise<DaemonInfo> | undefined;

  /** `dockerHost` is DOCKER_HOST as settings read it (settings stay the only reader of the environment). */
  constructor(dockerHost?: string) {
    this.engine = new EngineClient(engineTarget(dockerHost));
    this.endpoint = dockerHost ?? 'unix:///var/run/docker.sock';
  }

  /** Asked once per process (a batch asks per task); a failed answer is not kept. */
  info(): Promise<DaemonInfo> {
    this.daemonInfo ??= this.readInfo().catch((error: unknown) => {
      this.daemonInfo = undefined;
      throw error;
    });
    return this.daemonInfo;
  }

  private async readInfo(): Promise<DaemonInfo> {
    const [version, info] = await this.call('reach the Docker daemon', () => Promise.all([this.engine.json('GET', '/version', versionReply), this.engine.json('GET', '/info', infoReply)]));
    return {
      endpoint: this.endpoint,
      serverVersion: version.Version,
      apiVersion: version.ApiVersion,
      os: version.Os,
      arch: version.Arch,
      runtimes: Object.keys(info.Runtimes ?? {}),
      runtimeArgs: Object.fromEntries(
        Object.entries(info.Runtimes ?? {}).map(([name, runtime]) => {
          const args = valueAt(runtime, 'runtimeArgs');
          return [name, Array.isArray(args) ? args.filter((arg): arg is string => typeof arg === 'string') : []];
        }),
      ),
      cpus: Number(info.NCPU) || undefined,
      memoryBytes: Number(info.MemTotal) || undefined,
    };
  }

  async imageExists(tag: string): Promise<boolean> {
    try {
      await this.engine.command('GET', `/images/${encodeURIComponent(tag)}/json`);
      return true;
    } catch (error) {
      if (statusOf(error) === 404) return false;
      throw this.translate(error, `inspect image ${tag}`);
    }
  }

  async inspectImage(tag: string): Promise<ImageSummary | undefined> {
    try {
      const image = await this.engine.json('GET', `/images/${encodeURIComponent(tag)}/json`, imageReply);
      return { id: image.Id, architecture: image.Architecture ?? undefined, os: image.Os ?? undefined, labels: image.Config?.Labels ?? {} };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.translate(error, `inspect image ${tag}`);
    }
  }

  async buildImage(context: Readable, options: { tag: string; buildArgs: Record<string, string>; labels: Record<string, string> }, onProgress: (line: string) => void): Promise<void> {
    // No registry is reachable from most places asp runs: the build uses the local base image (no pull).
    const query: Query = { t: options.tag, buildargs: JSON.stringify(options.buildArgs), labels: JSON.stringify(options.labels), rm: 1, forcerm: 1 };
    const progress = await this.call(`build image ${options.tag}`, () => this.engine.stream('POST', '/build', { query, stream: context, contentType: 'application/x-tar' }));
    // The answer is one JSON object per line (buildEvent). A line that is not JSON is skipped; one of another shape
    // fails the build, as one that says nothing asp can read about whether the build worked.
    let failed: string | undefined;
    const onLine = (line: string) => {
      if (!line.trim()) return;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        return;
      }
      const parsed = buildEvent.safeParse(json);
      if (!parsed.success) {
        failed ??= `the daemon's build output is not what asp expects (${describeIssue(parsed.error)})`;
        return;
      }
      const event = parsed.data;
      if (event.error || event.errorDetail) failed ??= event.errorDetail?.message ?? event.error;
      const text = event.stream?.trim();
      if (text) onProgress(text);
    };
    try {
      let rest = '';
      for await (const chunk of progress as AsyncIterable<Buffer>) {
        const lines = (rest + chunk.toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        lines.forEach(onLine);
      }
      onLine(rest);
    } catch (error) {
      failed ??= errorMessage(error);
    }
    if (failed !== undefined) {
      throw new AspError('IMAGE_UNAVAILABLE', `building ${options.tag} failed: ${failed.trim()}`, 'check that the base image is present (docker images) or pass --image');
    }
  }

  async createVolume(name: string, labels: Record<string, string>): Promise<void> {
    await this.call(`create volume ${name}`, () => this.engine.command('POST', '/volumes/create', { body: { Name: name, Labels: labels } }));
  }

  async removeVolume(name: string): Promise<void> {
    try {
      await this.engine.command('DELETE', `/volumes/${encodeURIComponent(name)}`, { query: { force: true } });
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
    const result = await this.call('list volumes', () =>
      this.engine.json('GET', '/volumes', volumesReply, {
        query: { filters: JSON.stringify({ label: labelFilters }) },
      }),
    );
    return (result.Volumes ?? []).map(volumeSummary);
  }

  async inspectVolume(name: string): Promise<VolumeSummary | undefined> {
    try {
      return volumeSummary(await this.engine.json('GET', `/volumes/${encodeURIComponent(name)}`, volumeReply));
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.translate(error, `inspect volume ${name}`);
    }
  }

  async createContainer(body: ContainerCreateBody): Promise<string> {
    const { name, ...config } = body;
    const created = await this.call(`create container ${name}`, () => this.engine.json('POST', '/containers/create', createdReply, { query: { name }, body: config }));
    return created.Id;
  }

  async inspectContainer(containerId: string): Promise<ContainerHardening> {
    let inspected: z.infer<typeof inspectReply>;
    try {
      inspected = await this.engine.json('GET', `/containers/${containerId}/json`, inspectReply);
    } catch (error) {
      if (statusOf(error) === 404) throw new AspError('NOT_FOUND', `container ${containerId} is gone: ${daemonMessage(error)}`, undefined, { cause: error });
      throw this.translate(error, `inspect container ${containerId}`);
    }
    const host = inspected.HostConfig ?? {};
    const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
    const number = (value: unknown) => (typeof value === 'number' ? value : undefined);
    const flag = (value: unknown) => (typeof value === 'boolean' ? value : undefined);
    const list = (value: unknown) => (Array.isArray(value) ? value.filter((entry): entry is string => typeof entry === 'string') : []);
    return {
      user: text(inspected.Config?.User),
      runtime: text(host.Runtime),
      readonlyRootfs: flag(host.ReadonlyRootfs),
      capDrop: list(host.CapDrop),
      capAdd: list(host.CapAdd),
      securityOpt: list(host.SecurityOpt),
      networkMode: text(host.NetworkMode),
      pidsLimit: number(host.PidsLimit),
      memory: number(host.Memory),
      memorySwap: number(host.MemorySwap),
      privileged: flag(host.Privileged),
      init: flag(host.Init),
      binds: list(host.Binds),
      devices: Array.isArray(host.Devices) ? host.Devices.length : 0,
      mounts: Array.isArray(host.Mounts) ? host.Mounts.map((mount: { Type?: unknown; Target?: unknown }) => ({ type: String(mount?.Type ?? ''), target: String(mount?.Target ?? '') })) : [],
    };
  }

  async getArchive(containerId: string, path: string): Promise<Readable> {
    try {
      return await this.engine.stream('GET', `/containers/${containerId}/archive`, { query: { path } });
    } catch (error) {
      if (statusOf(error) === 404) throw new AspError('NOT_FOUND', `${path} is not in the container: ${daemonMessage(error)}`, undefined, { cause: error });
      throw this.translate(error, `copy ${path} out of the container`);
    }
  }

  async attach(containerId: string): Promise<AttachedStreams> {
    // stdin needs a hijacked (two-way) connection.
    const socket = await this.call('attach to the container', () => this.engine.hijack(`/containers/${containerId}/attach`, { stream: 1, stdin: 1, stdout: 1, stderr: 1, logs: 0 }));
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    // Tty is false, so the stream is multiplexed; demux it into two plain streams.
    demultiplex(socket, stdout, stderr);
    const finish = () => {
      stdout.end();
      stderr.end();
    };
    socket.on('end', finish);
    socket.on('close', finish);
    socket.on('error', finish);
    return { stdout, stderr, stdin: socket as Writable };
  }

  async start(containerId: string): Promise<void> {
    await this.call('start the container', () => this.engine.command('POST', `/containers/${containerId}/start`));
  }

  async wait(containerId: string): Promise<number> {
    const result = await this.call('wait for the container', () => this.engine.json('POST', `/containers/${containerId}/wait`, waitReply));
    return result.StatusCode;
  }

  async kill(containerId: string): Promise<void> {
    try {
      await this.engine.command('POST', `/containers/${containerId}/kill`, { query: { signal: 'SIGKILL' } });
    } catch (error) {
      // 404: gone; 409: not running. Both mean there is nothing left to kill.
      if (statusOf(error) === 404 || statusOf(error) === 409) return;
      throw this.translate(error, 'kill the container');
    }
  }

  async removeContainer(containerId: string): Promise<void> {
    try {
      await this.engine.command('DELETE', `/containers/${containerId}`, { query: { force: true, v: true } });
    } catch (error) {
      // 404: already gone; 409 "removal already in progress": someone else is removing it.
      if (statusOf(error) === 404 || statusOf(error) === 409) return;
      throw this.translate(error, 'remove the container');
    }
  }

  async listContainers(labelFilters: string[]): Promise<ContainerSummary[]> {
    const containers = await this.call('list containers', () =>
      this.engine.json('GET', '/containers/json', containersReply, {
        query: { all: true, filters: JSON.stringify({ label: labelFilters }) },
      }),
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
    const code = systemErrorCode(error);
    if (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT' || code === 'ENOTFOUND') {
      return new AspError('DOCKER_UNAVAILABLE', `cannot ${what}: Docker at ${this.endpoint} does not answer (${code})`, 'start the Docker daemon, or point DOCKER_HOST at one; `asp doctor` checks', {
        cause: error,
      });
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

/** CreatedAt of a volume, in the Engine API since 1.30. */
function parsedDate(text: string | null | undefined): Date | undefined {
  const date = typeof text === 'string' ? new Date(text) : undefined;
  return date && !Number.isNaN(date.getTime()) ? date : undefined;
}

function statusOf(error: unknown): number | undefined {
  return error instanceof EngineApiError ? error.statusCode : undefined;
}

/** The daemon's own words for an error (its JSON `message`), else the error's message. */
function daemonMessage(error: unknown): string {
  const message = error instanceof EngineApiError ? error.json?.message : undefined;
  return (message ?? errorMessage(error)).trim();
}

function volumeSummary(volume: z.infer<typeof volumeReply>): VolumeSummary {
  return { name: volume.Name, labels: volume.Labels ?? {}, createdAt: parsedDate(volume.CreatedAt) };
}
