import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { z } from 'zod';
import { describeIssue } from '../config/task-spec.js';
import { AspError, errorMessage, systemErrorCode } from '../core/asp-error.js';
import { valueAt } from '../core/record-guard.js';
import { DEFAULT_SOCKET, discoverDaemon, realWorld, type DaemonAddress } from './daemon-address.js';
import { demultiplex, EngineApiError, EngineClient, engineTarget, EngineTimeoutError, SshConnectionError, type Query } from './engine-client.js';
import type { AttachedStreams, ContainerHardening, ContainerCreateBody, ContainerSummary, DaemonInfo, DockerPort, ImageSummary, VolumeSummary } from './port.js';

// The answers asp reads, each only as far as it relies on them (zod drops the rest). `.nullish()` where the code below
// already takes null for "none": the daemon sends `null` for an empty list or map.
const labelsReply = z.record(z.string(), z.string()).nullish();
const versionReply = z.object({
  Version: z.string(),
  ApiVersion: z.string(),
  MinAPIVersion: z.string().nullish(),
  Os: z.string(),
  Arch: z.string(),
  Components: z.array(z.object({ Name: z.string() })).nullish(),
});
// NCPU and MemTotal are left to readInfo, which reads them with Number() and takes 0 or NaN as "not said".
const infoReply = z.object({ Runtimes: z.record(z.string(), z.unknown()).nullish(), NCPU: z.unknown(), MemTotal: z.unknown() });
const volumeReply = z.object({ Name: z.string(), Labels: labelsReply, CreatedAt: z.string().nullish() });
const volumesReply = z.object({ Volumes: z.array(volumeReply).nullish() });
const createdReply = z.object({ Id: z.string() });
// Inspect is read field by field, each checked for its type where it is read (inspectContainer).
const inspectReply = z.object({ Config: z.object({ User: z.unknown() }).nullish(), HostConfig: z.record(z.string(), z.unknown()).nullish() });
const waitReply = z.object({ StatusCode: z.number() });
const stateReply = z.object({ State: z.object({ OOMKilled: z.boolean().nullish() }).nullish() });
const imageReply = z.object({ Id: z.string(), Architecture: z.string().nullish(), Os: z.string().nullish(), Config: z.object({ Labels: labelsReply }).nullish() });
const containersReply = z.array(z.object({ Id: z.string(), Names: z.array(z.string()).nullish(), State: z.string(), Labels: labelsReply, Created: z.number() }));
/** One line of build progress: output in `stream`, a failure in `error`/`errorDetail`. */
const buildEvent = z.object({ stream: z.string().optional(), error: z.string().optional(), errorDetail: z.object({ message: z.string().optional() }).optional() });

/** The oldest Engine API asp speaks (Docker 19.03): older daemons ignore fields asp's hardening depends on. */
export const MIN_API_VERSION = '1.40';
/**
 * The newest Engine API asp asks for: a newer daemon is spoken to at this version (the docker CLI's negotiation, with
 * asp's own ceiling), an older one at its own.
 */
export const MAX_API_VERSION = '1.47';

/** How long a build may go without a progress line: a RUN step can be quiet for minutes. */
const BUILD_SILENCE_MS = 10 * 60_000;
/** A forced removal that met the container exiting is asked again, this many times, this far apart (times the try). */
const EXITING_RETRIES = 5;
const EXITING_BACKOFF_MS = 50;
/** Removal answers when the files are gone (a big volume takes a while); an archive waits for its reader. */
const LONG_SILENCE_MS = 120_000;

export interface EngineOptions {
  /** How long an ordinary call may go without an answer (ASP_DOCKER_TIMEOUT). */
  timeoutMs?: number | undefined;
  /** What runs ssh for an ssh:// daemon (ASP_SSH_COMMAND). */
  sshCommand?: string | undefined;
}

/** The one place that speaks the Docker Engine API. It translates daemon errors into AspErrors with a hint. */
export class EngineAdapter implements DockerPort {
  private connection: { client: EngineClient; address: DaemonAddress } | undefined;
  private negotiated: Promise<z.infer<typeof versionReply>> | undefined;
  /** The daemon's answer to GET /version, once negotiated. */
  private version: z.infer<typeof versionReply> | undefined;
  private daemonInfo: Promise<DaemonInfo> | undefined;
  private readonly locate: () => DaemonAddress;

  /**
   * `where` is a daemon address (DOCKER_HOST's syntax, or what discovery found), or a function that finds it the
   * first time a call needs it (a bad context then fails that call, not a command that never talks to Docker).
   */
  constructor(
    where?: string | DaemonAddress | (() => DaemonAddress),
    private readonly options: EngineOptions = {},
  ) {
    this.locate =
      typeof where === 'function'
        ? where
        : () => (typeof where === 'object' ? where : { host: where ?? `unix://${DEFAULT_SOCKET}`, source: where ? 'DOCKER_HOST' : 'the default socket', tls: undefined });
  }

  /** The daemon the environment names, found as the docker CLI finds it (daemon-address.ts). */
  static fromEnvironment(env: NodeJS.ProcessEnv, options: EngineOptions = {}): EngineAdapter {
    return new EngineAdapter(() => discoverDaemon(realWorld(env)), options);
  }

  /** Where the calls go; found on first use. */
  get address(): DaemonAddress {
    return this.connect().address;
  }

  private get endpoint(): string {
    return this.connection?.address.host ?? 'the Docker daemon';
  }

  private connect(): { client: EngineClient; address: DaemonAddress } {
    if (!this.connection) {
      const address = this.locate();
      const client = new EngineClient(engineTarget(address.host, { tls: address.tls, sshCommand: this.options.sshCommand }), this.options.timeoutMs);
      this.connection = { client, address };
    }
    return this.connection;
  }

  /**
   * The client, once the daemon's API version is known and new enough: asked once per process (GET /version,
   * unversioned), then every path carries the version asp speaks to it at. A failed answer is not kept.
   */
  private async engine(): Promise<EngineClient> {
    const { client } = this.connect();
    this.negotiated ??= this.negotiate(client).catch((error: unknown) => {
      this.negotiated = undefined;
      throw error;
    });
    await this.negotiated;
    return client;
  }

  private async negotiate(client: EngineClient): Promise<z.infer<typeof versionReply>> {
    const version = await this.call('reach the Docker daemon', () => client.json('GET', '/version', versionReply, { unversioned: true }));
    if (compareApi(version.ApiVersion, MIN_API_VERSION) < 0) {
      throw new AspError(
        'DOCKER_FAILED',
        `Docker at ${this.endpoint} speaks Engine API ${version.ApiVersion}; asp needs ${MIN_API_VERSION} or newer (Docker 19.03+)`,
        'upgrade the daemon: an older one silently ignores hardening fields asp sets (Init, Mounts, NanoCpus)',
      );
    }
    const speak = compareApi(version.ApiVersion, MAX_API_VERSION) > 0 ? MAX_API_VERSION : version.ApiVersion;
    if (version.MinAPIVersion && compareApi(speak, version.MinAPIVersion) < 0) {
      throw new AspError('DOCKER_FAILED', `Docker at ${this.endpoint} accepts Engine API ${version.MinAPIVersion} and newer only; this asp speaks up to ${MAX_API_VERSION}`, 'upgrade asp');
    }
    client.apiVersion = speak;
    this.version = version;
    return version;
  }

  /** Whether the engine said it is Podman (its GET /version names a "Podman Engine" component); known once negotiated. */
  private isPodman(): boolean {
    return (this.version?.Components ?? []).some((component) => /podman/i.test(component.Name));
  }

  async ping(): Promise<void> {
    const { client } = this.connect();
    await this.call('reach the Docker daemon', () => client.json('GET', '/version', versionReply, { unversioned: true }));
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
    // Asked side by side with the version (unversioned: the fields read here are the same in every API version asp
    // speaks), so a task's first engine question costs one round trip, not two.
    const { client } = this.connect();
    const [, info] = await Promise.all([this.engine(), this.call('reach the Docker daemon', () => client.json('GET', '/info', infoReply, { unversioned: true }))]);
    const version = this.version;
    if (!version) throw new Error('the daemon version is known once engine() resolved');
    return {
      endpoint: this.endpoint,
      source: this.connection?.address.source,
      product: this.isPodman() ? 'podman' : 'docker',
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
      await (await this.engine()).command('GET', `/images/${encodeURIComponent(tag)}/json`);
      return true;
    } catch (error) {
      if (statusOf(error) === 404) return false;
      throw this.translate(error, `inspect image ${tag}`);
    }
  }

  async inspectImage(tag: string): Promise<ImageSummary | undefined> {
    try {
      const image = await (await this.engine()).json('GET', `/images/${encodeURIComponent(tag)}/json`, imageReply);
      return { id: image.Id, architecture: image.Architecture ?? undefined, os: image.Os ?? undefined, labels: image.Config?.Labels ?? {} };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.translate(error, `inspect image ${tag}`);
    }
  }

  async buildImage(context: Readable, options: { tag: string; buildArgs: Record<string, string>; labels: Record<string, string> }, onProgress: (line: string) => void): Promise<void> {
    // No registry is reachable from most places asp runs: the build uses the local base image (no pull).
    const query: Query = { t: options.tag, buildargs: JSON.stringify(options.buildArgs), labels: JSON.stringify(options.labels), rm: 1, forcerm: 1 };
    const progress = await this.call(`build image ${options.tag}`, async () =>
      (await this.engine()).stream('POST', '/build', { query, stream: context, contentType: 'application/x-tar', idleMs: BUILD_SILENCE_MS }),
    );
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
    await this.call(`create volume ${name}`, async () => (await this.engine()).command('POST', '/volumes/create', { body: { Name: name, Labels: labels } }));
  }

  async removeVolume(name: string): Promise<void> {
    try {
      await (await this.engine()).command('DELETE', `/volumes/${encodeURIComponent(name)}`, { query: { force: true }, idleMs: LONG_SILENCE_MS });
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
    const result = await this.call('list volumes', async () =>
      (await this.engine()).json('GET', '/volumes', volumesReply, {
        query: { filters: JSON.stringify({ label: labelFilters }) },
      }),
    );
    return (result.Volumes ?? []).map(volumeSummary);
  }

  async inspectVolume(name: string): Promise<VolumeSummary | undefined> {
    try {
      return volumeSummary(await (await this.engine()).json('GET', `/volumes/${encodeURIComponent(name)}`, volumeReply));
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.translate(error, `inspect volume ${name}`);
    }
  }

  /** seccomp= options as Podman got them (a file's path) → as asp asked for them (the profile): inspect reads them back. */
  private readonly podmanSeccomp = new Map<string, string>();

  /**
   * A create body in the terms of Podman's Docker API (4.3): `seccomp=` is the path of a file on Podman's own host,
   * so the profile is written to a file of this process's (a local socket only: a remote Podman cannot read it), and
   * /run and /var/tmp, which Podman adds to a read-only root as writable unsized tmpfs, are asked for read-only.
   */
  private forPodman(body: ContainerCreateBody): ContainerCreateBody {
    if (!this.connection?.address.host.startsWith('unix://')) {
      throw new AspError(
        'DOCKER_FAILED',
        `Podman at ${this.endpoint} is not on this host: its Docker API reads asp's seccomp profile only from a file on its own host`,
        'run asp on the Podman host (its unix socket), or use a Docker daemon',
      );
    }
    const securityOpt = body.HostConfig.SecurityOpt.map((option) => {
      if (!option.startsWith('seccomp=') || option.startsWith('seccomp=/')) return option;
      const written = `seccomp=${seccompFile(option.slice('seccomp='.length))}`;
      this.podmanSeccomp.set(written, option);
      return written;
    });
    const tmpfs = { '/run': PODMAN_CLOSED_TMPFS, '/var/tmp': PODMAN_CLOSED_TMPFS, ...body.HostConfig.Tmpfs };
    return { ...body, HostConfig: { ...body.HostConfig, SecurityOpt: securityOpt, Tmpfs: tmpfs } };
  }

  async createContainer(body: ContainerCreateBody): Promise<string> {
    const engine = await this.engine();
    const { name, ...config } = this.isPodman() ? this.forPodman(body) : body;
    const created = await this.call(`create container ${name}`, () => engine.json('POST', '/containers/create', createdReply, { query: { name }, body: config }));
    return created.Id;
  }

  async inspectContainer(containerId: string): Promise<ContainerHardening> {
    let inspected: z.infer<typeof inspectReply>;
    try {
      inspected = await (await this.engine()).json('GET', `/containers/${containerId}/json`, inspectReply);
    } catch (error) {
      if (statusOf(error) === 404) throw new AspError('NOT_FOUND', `container ${containerId} is gone: ${daemonMessage(error)}`, undefined, { cause: error });
      throw this.translate(error, `inspect container ${containerId}`);
    }
    const host = inspected.HostConfig ?? {};
    const podman = this.isPodman();
    const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
    const number = (value: unknown) => (typeof value === 'number' ? value : undefined);
    const flag = (value: unknown) => (typeof value === 'boolean' ? value : undefined);
    const list = (value: unknown) => (Array.isArray(value) ? value.filter((entry): entry is string => typeof entry === 'string') : []);
    return {
      user: text(inspected.Config?.User),
      runtime: text(host.Runtime),
      readonlyRootfs: flag(host.ReadonlyRootfs),
      // Podman lists the capabilities it took from its default set, never ALL: what the container holds is checked
      // where it is true, in the runner's hello (CapEff as its kernel reports it).
      capDrop: podman ? undefined : list(host.CapDrop),
      capAdd: list(host.CapAdd),
      securityOpt: list(host.SecurityOpt).map((option) => this.podmanSeccomp.get(option) ?? option),
      networkMode: text(host.NetworkMode),
      pidsLimit: number(host.PidsLimit),
      memory: number(host.Memory),
      memorySwap: number(host.MemorySwap),
      privileged: flag(host.Privileged),
      init: flag(host.Init),
      // Podman reports a named volume in Binds (`name:/target:opts`) and not in HostConfig.Mounts: read as the mount it is.
      binds: podman ? list(host.Binds).filter((bind) => bind.startsWith('/')) : list(host.Binds),
      devices: Array.isArray(host.Devices) ? host.Devices.length : 0,
      mounts: podman
        ? list(host.Binds)
            .filter((bind) => !bind.startsWith('/'))
            .map((bind) => ({ type: 'volume', target: bind.split(':')[1] ?? '' }))
        : Array.isArray(host.Mounts)
          ? host.Mounts.map((mount: { Type?: unknown; Target?: unknown }) => ({ type: String(mount?.Type ?? ''), target: String(mount?.Target ?? '') }))
          : [],
    };
  }

  async getArchive(containerId: string, path: string): Promise<Readable> {
    try {
      return await (await this.engine()).stream('GET', `/containers/${containerId}/archive`, { query: { path }, idleMs: LONG_SILENCE_MS });
    } catch (error) {
      if (statusOf(error) === 404) throw new AspError('NOT_FOUND', `${path} is not in the container: ${daemonMessage(error)}`, undefined, { cause: error });
      throw this.translate(error, `copy ${path} out of the container`);
    }
  }

  async attach(containerId: string): Promise<AttachedStreams> {
    // stdin needs a hijacked (two-way) connection.
    const socket = await this.call('attach to the container', async () => (await this.engine()).hijack(`/containers/${containerId}/attach`, { stream: 1, stdin: 1, stdout: 1, stderr: 1, logs: 0 }));
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
    await this.call('start the container', async () => (await this.engine()).command('POST', `/containers/${containerId}/start`));
  }

  async wait(containerId: string): Promise<number> {
    const result = await this.call('wait for the container', async () => (await this.engine()).json('POST', `/containers/${containerId}/wait`, waitReply, { idleMs: 0 }));
    return result.StatusCode;
  }

  async oomKilled(containerId: string): Promise<boolean | undefined> {
    const inspected = await this.call('inspect the container', async () => (await this.engine()).json('GET', `/containers/${containerId}/json`, stateReply));
    return inspected.State?.OOMKilled ?? undefined;
  }

  async kill(containerId: string): Promise<void> {
    try {
      await (await this.engine()).command('POST', `/containers/${containerId}/kill`, { query: { signal: 'SIGKILL' } });
    } catch (error) {
      // 404: gone; 409: not running. Both mean there is nothing left to kill.
      if (statusOf(error) === 404 || statusOf(error) === 409) return;
      throw this.translate(error, 'kill the container');
    }
  }

  async removeContainer(containerId: string): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await (await this.engine()).command('DELETE', `/containers/${containerId}`, { query: { force: true, v: true }, idleMs: LONG_SILENCE_MS });
        return;
      } catch (error) {
        // A container on its way out when the forced removal came ("Could not kill running container …, cannot
        // remove - Container … is not running"): nothing was removed. Asked again once it is out; it is a moment.
        const exiting = /cannot remove .*is not running/i.test(daemonMessage(error));
        if (exiting && attempt < EXITING_RETRIES) {
          await new Promise((resolve) => setTimeout(resolve, EXITING_BACKOFF_MS * attempt));
          continue;
        }
        // 404: already gone; 409 "removal already in progress": someone else is removing it.
        if (statusOf(error) === 404 || (statusOf(error) === 409 && !exiting)) return;
        throw this.translate(error, 'remove the container');
      }
    }
  }

  async renameContainer(currentName: string, newName: string): Promise<boolean> {
    try {
      await (await this.engine()).command('POST', `/containers/${encodeURIComponent(currentName)}/rename`, { query: { name: newName } });
      return true;
    } catch (error) {
      // 404: no container of that name (any more); 409: the new name is taken (someone else renamed it first); 400
      // "the same name as its current name": another caller found it by the old name too, and renamed it first.
      if (statusOf(error) === 404 || statusOf(error) === 409 || (statusOf(error) === 400 && /same name/i.test(daemonMessage(error)))) return false;
      throw this.translate(error, `rename container ${currentName}`);
    }
  }

  async listContainers(labelFilters: string[]): Promise<ContainerSummary[]> {
    const containers = await this.call('list containers', async () =>
      (await this.engine()).json('GET', '/containers/json', containersReply, {
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
    const unavailable = (message: string, hint: string) => new AspError('DOCKER_UNAVAILABLE', `cannot ${what}: ${message}`, hint, { cause: error });
    const where = `Docker at ${this.endpoint}`;
    const found = this.connection ? `; ${this.connection.address.source}` : '';
    const start = 'start the Docker daemon, or point DOCKER_HOST at one; `asp doctor` checks';
    if (error instanceof EngineTimeoutError) {
      return unavailable(
        `${where} accepted the connection and sent nothing for ${error.after}`,
        'the daemon is hung or overloaded: check `docker info` and its log; ASP_DOCKER_TIMEOUT=2m waits longer',
      );
    }
    if (error instanceof SshConnectionError) {
      return unavailable(
        `ssh to ${where} failed (${error.message})`,
        'check that `ssh HOST docker system dial-stdio` works from this shell without a prompt (keys, known_hosts), or set ASP_SSH_COMMAND',
      );
    }
    const code = systemErrorCode(error);
    switch (code) {
      case 'ENOENT':
        return unavailable(`${where} does not answer (ENOENT: no socket there${found})`, start);
      case 'ECONNREFUSED':
        return unavailable(`${where} does not answer (ECONNREFUSED: nothing listens there, the daemon is not running${found})`, start);
      case 'EACCES':
      case 'EPERM':
        return unavailable(
          `permission denied on ${this.endpoint} (${code}${found})`,
          "add your user to the socket's group (for Docker: sudo usermod -aG docker $USER, then log in again), or use a rootless daemon's socket",
        );
      case 'ECONNRESET':
      case 'EPIPE':
        return unavailable(`${where} closed the connection (${code})`, 'the daemon restarted or dropped the connection: check `docker info` and retry');
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
      case 'ETIMEDOUT':
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return unavailable(`${where} does not answer (${code}: cannot reach that host${found})`, 'check the host name and the network, or point DOCKER_HOST at a daemon that is reachable');
      default:
        break;
    }
    if (code && (/^ERR_(TLS|SSL)_/.test(code) || TLS_FAILURES.has(code))) {
      return unavailable(
        `TLS with ${where} failed (${code}: ${errorMessage(error)})`,
        "check DOCKER_CERT_PATH: ca.pem must have signed the daemon's certificate, and cert.pem/key.pem must be a client certificate the daemon trusts",
      );
    }
    const status = statusOf(error);
    const detail = daemonMessage(error);
    if (status === 400 && /HTTP request to an HTTPS server/i.test(detail)) {
      return unavailable(`${where} speaks TLS and asp spoke plain HTTP`, 'set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the directory with ca.pem, cert.pem and key.pem');
    }
    if (status === 404 && /image/i.test(detail)) {
      return new AspError('IMAGE_UNAVAILABLE', `cannot ${what}: ${detail}`, 'run `asp image build`, or pass --image with an image that exists', { cause: error });
    }
    if (/unknown (or invalid )?runtime/i.test(detail)) {
      return new AspError('RUNTIME_UNAVAILABLE', `cannot ${what}: ${detail}`, 'install that runtime in the daemon or drop --runtime', { cause: error });
    }
    return new AspError('DOCKER_FAILED', `cannot ${what}: ${detail}`, 'see the Docker daemon log; rerun with --debug for details', { cause: error });
  }
}

/** Node's codes for a TLS handshake that failed on the certificate (besides ERR_TLS_* and ERR_SSL_*). */
const TLS_FAILURES = new Set([
  'EPROTO',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
]);

/** /run and /var/tmp on Podman: read-only and tiny, as they are on Docker (part of the read-only root). */
const PODMAN_CLOSED_TMPFS = 'ro,nosuid,nodev,noexec,size=64k';

/** This process's own directory for the seccomp files it hands a local Podman (made fresh, 0700; gone at exit). */
let seccompDir: string | undefined;

/** Writes `profile` to a file named by its hash, once, and returns its path. */
function seccompFile(profile: string): string {
  if (!seccompDir) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-seccomp-'));
    seccompDir = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  const file = path.join(seccompDir, `${createHash('sha256').update(profile).digest('hex').slice(0, 16)}.json`);
  if (!existsSync(file)) writeFileSync(file, profile, { mode: 0o644 });
  return file;
}

/** Compares two Engine API versions ("1.41" < "1.100"), as numbers part by part. */
export function compareApi(a: string, b: string): number {
  const left = a.split('.').map(Number);
  const right = b.split('.').map(Number);
  for (let index = 0; index < Math.max(left.length, right.length); index += 1) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0);
    if (difference !== 0) return Math.sign(difference);
  }
  return 0;
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
/**
 * The daemon's own words for an error (its JSON `message`), else the error's message: one line, at most
 * DAEMON_MESSAGE_CHARS (an engine may quote a whole request field back, such as a seccomp profile of 10 kB).
 */
function daemonMessage(error: unknown): string {
  const message = error instanceof EngineApiError ? error.json?.message : undefined;
  const line = (message ?? errorMessage(error)).trim().replace(/\s*\n\s*/g, ' ');
  if (line.length <= DAEMON_MESSAGE_CHARS) return line;
  const keep = DAEMON_MESSAGE_CHARS / 2;
  return `${line.slice(0, keep)} … (${line.length - 2 * keep} characters left out) … ${line.slice(-keep)}`;
}

const DAEMON_MESSAGE_CHARS = 400;

function volumeSummary(volume: z.infer<typeof volumeReply>): VolumeSummary {
  return { name: volume.Name, labels: volume.Labels ?? {}, createdAt: parsedDate(volume.CreatedAt) };
}
