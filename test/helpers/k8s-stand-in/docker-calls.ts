import type { Duplex } from 'node:stream';
import { z } from 'zod';
import { discoverDaemon, realWorld } from '../../../src/docker/daemon-address.js';
import { EngineAdapter } from '../../../src/docker/engine-adapter.js';
import { EngineApiError, EngineClient, engineTarget } from '../../../src/docker/engine-client.js';
import type { DockerPort } from '../../../src/docker/port.js';

/**
 * What the stand-in's kubelet asks of Docker. The project's DockerPort does most of it; the rest goes through the
 * project's EngineClient directly: a create body with fields ContainerCreateBody does not have (GroupAdd, Hostname,
 * an Entrypoint or Cmd left to the image), the image's USER, a container's end state (OOMKilled, times), a signal other
 * than SIGKILL, and the raw attach connection (read with backpressure, which DockerPort's demultiplexed streams lack).
 */
export interface DockerContainerBody {
  Image: string;
  Entrypoint?: string[] | undefined;
  Cmd?: string[] | undefined;
  Env: string[];
  User: string;
  WorkingDir: string;
  Hostname: string;
  Labels: Record<string, string>;
  AttachStdin: boolean;
  AttachStdout: true;
  AttachStderr: true;
  OpenStdin: boolean;
  StdinOnce: boolean;
  Tty: false;
  NetworkDisabled: true;
  HostConfig: {
    NetworkMode: 'none';
    ReadonlyRootfs: boolean;
    CapDrop: string[];
    CapAdd: string[];
    SecurityOpt: string[];
    Privileged: false;
    Init: boolean;
    PidsLimit: number;
    Memory: number;
    MemorySwap: number;
    NanoCpus: number;
    IpcMode: 'private';
    GroupAdd: string[];
    LogConfig: { Type: 'json-file'; Config: Record<string, string> };
    Mounts: Array<{ Type: 'volume'; Source: string; Target: string; ReadOnly: boolean; VolumeOptions: { NoCopy: true } }>;
    Runtime?: string | undefined;
  };
}

export interface ImageFacts {
  /** The image's id, `sha256:...`. */
  id: string;
  /** Its USER ("" when it names none). */
  user: string;
}

export interface ContainerEnd {
  exitCode: number;
  oomKilled: boolean;
  startedAt: string | undefined;
  finishedAt: string | undefined;
}

const imageReply = z.object({ Id: z.string(), Config: z.object({ User: z.string().nullish() }).nullish() });
const createdReply = z.object({ Id: z.string() });
const stateReply = z.object({
  State: z.object({ ExitCode: z.number(), OOMKilled: z.boolean().nullish(), StartedAt: z.string().nullish(), FinishedAt: z.string().nullish() }),
});

export class DockerCalls {
  constructor(
    readonly port: DockerPort,
    private readonly client: EngineClient,
  ) {}

  /** The daemon the environment names (DOCKER_HOST, else the default socket), as the project's tests find it. */
  static fromEnvironment(env: NodeJS.ProcessEnv): DockerCalls {
    const address = discoverDaemon(realWorld(env));
    return new DockerCalls(EngineAdapter.fromEnvironment(env), new EngineClient(engineTarget(address.host, { tls: address.tls })));
  }

  async image(tag: string): Promise<ImageFacts | undefined> {
    try {
      const image = await this.client.json('GET', `/images/${encodeURIComponent(tag)}/json`, imageReply);
      return { id: image.Id, user: image.Config?.User ?? '' };
    } catch (error) {
      if (error instanceof EngineApiError && error.statusCode === 404) return undefined;
      throw error;
    }
  }

  /** Creates a container; a refusal throws with the daemon's own words. */
  async create(name: string, body: DockerContainerBody | HelperBody): Promise<string> {
    return (await this.client.json('POST', '/containers/create', createdReply, { query: { name }, body })).Id;
  }

  /** The container's stdin, stdout and stderr on one hijacked connection (multiplexed frames out), paused until read. */
  attach(id: string): Promise<Duplex> {
    return this.client.hijack(`/containers/${id}/attach`, { stream: 1, stdin: 1, stdout: 1, stderr: 1, logs: 0 });
  }

  async start(id: string): Promise<void> {
    await this.client.command('POST', `/containers/${id}/start`);
  }

  wait(id: string): Promise<number> {
    return this.port.wait(id);
  }

  /** Sends a signal; a container already stopped or gone is success. */
  async signal(id: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    try {
      await this.client.command('POST', `/containers/${id}/kill`, { query: { signal } });
    } catch (error) {
      if (error instanceof EngineApiError && (error.statusCode === 404 || error.statusCode === 409)) return;
      throw error;
    }
  }

  async end(id: string): Promise<ContainerEnd | undefined> {
    try {
      const { State: state } = await this.client.json('GET', `/containers/${id}/json`, stateReply);
      return { exitCode: state.ExitCode, oomKilled: state.OOMKilled ?? false, startedAt: state.StartedAt ?? undefined, finishedAt: state.FinishedAt ?? undefined };
    } catch (error) {
      if (error instanceof EngineApiError && error.statusCode === 404) return undefined;
      throw error;
    }
  }

  remove(id: string): Promise<void> {
    return this.port.removeContainer(id);
  }

  createVolume(name: string, labels: Record<string, string>): Promise<void> {
    return this.port.createVolume(name, labels);
  }

  removeVolume(name: string): Promise<void> {
    return this.port.removeVolume(name);
  }

  /** Removes every container, then every volume, that carries `label` (`key=value`). */
  async sweep(label: string): Promise<void> {
    const containers = await this.port.listContainers([label]);
    await Promise.all(containers.map((container) => this.port.removeContainer(container.id)));
    const volumes = await this.port.listVolumes([label]);
    await Promise.all(volumes.map((volume) => this.port.removeVolume(volume.name)));
  }
}

/** A short-lived helper container (the emptyDir set-up): only what it needs, and never a network. */
export interface HelperBody {
  Image: string;
  Entrypoint: string[];
  Cmd: string[];
  User: '0:0';
  Labels: Record<string, string>;
  NetworkDisabled: true;
  HostConfig: { NetworkMode: 'none'; Mounts: DockerContainerBody['HostConfig']['Mounts']; LogConfig: DockerContainerBody['HostConfig']['LogConfig'] };
}

/** The daemon's words for a failed call. */
export function daemonWords(error: unknown): string {
  if (error instanceof EngineApiError) return error.json?.message ?? error.message;
  return error instanceof Error ? error.message : String(error);
}
