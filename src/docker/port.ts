import type { Readable, Writable } from 'node:stream';
import type { EngineInfo } from '../backend/sandbox-backend.js';

/**
 * The small interface everything outside src/docker/ uses to talk to Docker. The dockerode adapter implements
 * it against a real daemon; unit tests use a fake. Field names follow the Docker Engine API.
 */
export interface ContainerCreateBody {
  name: string;
  Image: string;
  Cmd: string[];
  Entrypoint?: string[];
  Env: string[];
  User: string;
  WorkingDir: string;
  Labels: Record<string, string>;
  AttachStdin: boolean;
  AttachStdout: boolean;
  AttachStderr: boolean;
  OpenStdin: boolean;
  StdinOnce?: boolean;
  Tty: boolean;
  NetworkDisabled: boolean;
  StopTimeout: number;
  HostConfig: {
    NetworkMode: 'none';
    ReadonlyRootfs: boolean;
    Tmpfs: Record<string, string>;
    CapDrop: string[];
    CapAdd: string[];
    SecurityOpt: string[];
    Privileged: boolean;
    Init: boolean;
    PidsLimit: number;
    Memory: number;
    MemorySwap: number;
    NanoCpus: number;
    IpcMode: string;
    LogConfig: { Type: string; Config: Record<string, string> };
    Mounts: Array<{ Type: 'volume'; Source: string; Target: string; ReadOnly: boolean; VolumeOptions?: { NoCopy: boolean } }>;
    Binds: string[];
    Devices: unknown[];
    AutoRemove: boolean;
    Runtime?: string;
  };
}

/** What the daemon says of itself: the backend seam's EngineInfo, field for field. */
export type DaemonInfo = EngineInfo;

/**
 * The hardening of a created container as the daemon reports it back (inspect), so asp can see what an engine
 * silently ignored. Undefined fields are ones the daemon did not report.
 */
export interface ContainerHardening {
  user: string | undefined;
  runtime: string | undefined;
  readonlyRootfs: boolean | undefined;
  /** Undefined: the engine does not report it in comparable form (Podman); the runner's hello checks CapEff instead. */
  capDrop: string[] | undefined;
  capAdd: string[];
  securityOpt: string[];
  networkMode: string | undefined;
  pidsLimit: number | undefined;
  memory: number | undefined;
  memorySwap: number | undefined;
  privileged: boolean | undefined;
  init: boolean | undefined;
  /** Host paths bound in (`Binds`) and devices passed through: both must be empty. */
  binds: string[];
  devices: number;
  /** Each mount's type and target (`HostConfig.Mounts`). */
  mounts: Array<{ type: string; target: string }>;
}

/** What asp reads of an image: which it is (its id, a content digest), what it runs on, whose it is (labels). */
export interface ImageSummary {
  id: string;
  architecture: string | undefined;
  os: string | undefined;
  labels: Record<string, string>;
}

export interface ContainerSummary {
  id: string;
  name: string;
  state: string;
  labels: Record<string, string>;
  createdAt: Date;
}

export interface VolumeSummary {
  name: string;
  labels: Record<string, string>;
  /** Undefined when the daemon does not say (old API versions). */
  createdAt: Date | undefined;
}

export interface AttachedStreams {
  stdout: Readable;
  stderr: Readable;
  /** The container's stdin: host → sandbox messages and the workspace. */
  stdin: Writable;
}

export interface DockerPort {
  info(): Promise<DaemonInfo>;
  /** Asks the daemon now whether it answers (info() is asked once per process): throws when it does not. */
  ping(): Promise<void>;
  imageExists(tag: string): Promise<boolean>;
  /** The image's id, platform and labels; undefined when the daemon has no such image. */
  inspectImage(tag: string): Promise<ImageSummary | undefined>;
  buildImage(context: Readable, options: { tag: string; buildArgs: Record<string, string>; labels: Record<string, string> }, onProgress: (line: string) => void): Promise<void>;
  createVolume(name: string, labels: Record<string, string>): Promise<void>;
  /** Removes a volume; one already gone is success. One still mounted by a container fails with DOCKER_CONFLICT. */
  removeVolume(name: string): Promise<void>;
  listVolumes(labelFilters: string[]): Promise<VolumeSummary[]>;
  /** One volume by its name; undefined when the daemon has none of that name. */
  inspectVolume(name: string): Promise<VolumeSummary | undefined>;
  createContainer(body: ContainerCreateBody): Promise<string>;
  /** What the daemon made of a created container's hardening fields; NOT_FOUND when it is gone. */
  inspectContainer(containerId: string): Promise<ContainerHardening>;
  /** A tar of `path` in the container; NOT_FOUND when the path (or the container) is not there. */
  getArchive(containerId: string, path: string): Promise<Readable>;
  /**
   * Attaches to stdin, stdout and stderr (call before start so nothing is missed; the container must be made with
   * OpenStdin); the output streams end when the container stops.
   */
  attach(containerId: string): Promise<AttachedStreams>;
  start(containerId: string): Promise<void>;
  /** Resolves with the exit status when the container stops. */
  wait(containerId: string): Promise<number>;
  /** Whether the daemon says the container was killed for memory (inspect's State.OOMKilled); undefined if it does not say. */
  oomKilled(containerId: string): Promise<boolean | undefined>;
  /** Kills a running container; one already stopped or gone is success. */
  kill(containerId: string): Promise<void>;
  /** Removes a container with its anonymous volumes, forcibly; one already gone is success. */
  removeContainer(containerId: string): Promise<void>;
  listContainers(labelFilters: string[]): Promise<ContainerSummary[]>;
  /**
   * Renames a container found by its current name: false when no container has that name now, or another has the new
   * one. Of several callers renaming one container to one new name, exactly one gets true (a warm sandbox's claim).
   */
  renameContainer(currentName: string, newName: string): Promise<boolean>;
}
