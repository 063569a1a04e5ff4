import type { Readable, Writable } from 'node:stream';
import type { Limits } from '../config/task-spec.js';
import type { CleanupScope } from '../core/cleanup-stack.js';

/*
 * The seam between what a task is and where its sandbox runs. The supervisor, the reaper and batch use these few
 * operations and nothing else; Docker (src/docker/docker-backend.ts) is the first implementation, Kubernetes the
 * next. Whatever carries it, the task protocol (src/protocol/) is the one contract between host and runner: a
 * backend only makes the sandbox, carries the runner's stdin/stdout/stderr, and takes it all away again.
 */

/** What the engine behind a backend is and can run: the limits and the runtime of a task are checked against it. */
export interface EngineInfo {
  endpoint: string;
  /** Why this engine (DOCKER_HOST, a context, a well-known socket), as discovery found it. */
  source?: string | undefined;
  /** Which make the engine says it is: Podman's Docker-compatible service answers as Docker does, mostly. */
  product?: 'docker' | 'podman' | 'kubernetes' | undefined;
  serverVersion: string;
  apiVersion: string;
  os: string;
  arch: string;
  runtimes: string[];
  /** The engine would not say which runtimes it has (a namespaced service account cannot list RuntimeClasses). */
  runtimesUnknown?: boolean | undefined;
  /** The arguments each runtime is registered with (`runtimeArgs` in daemon.json), when the engine says. */
  runtimeArgs?: Record<string, string[]> | undefined;
  /** CPUs and memory of the engine's machine, when it says. */
  cpus?: number | undefined;
  memoryBytes?: number | undefined;
}

export interface ImageRequest {
  /** The user's image (`--image`): it must exist. Absent: asp's own sandbox image, built when missing. */
  image?: string | undefined;
  onBuildStart?: ((tag: string) => void) | undefined;
  onProgress?: ((line: string) => void) | undefined;
}

/** The image a task runs in, as the engine knows it. */
export interface PreparedImage {
  /** What to run: the tag (or id) asked for, or asp's own image. */
  ref: string;
  /** The image's content-addressed id (`sha256:…`), for the trace: which image ran, whatever the tag says later. */
  id: string | undefined;
}

/** One sandbox, as the supervisor asks for it: the hardening itself is not negotiable and not part of the request. */
export interface SandboxRequest {
  taskId: string;
  runId: string;
  /** The steps' sandbox, or the fresh one of a clean-room check (its own workspace, never the steps'). */
  role: 'task' | 'check';
  image: string;
  /** asp's ownership labels (src/docker/labels.ts): the reaper finds what a dead run left by these alone. */
  labels: Record<string, string>;
  limits: Limits;
  /** Host variables the user allowed in by name (`--env NAME`), already resolved; nothing else of the host's. */
  env: Record<string, string>;
  runtime: string | undefined;
  /** A clean-room check with a check dir: a root-owned tmpfs at /workspace/check that steps can read, not write. */
  checkDir: boolean;
}

/**
 * A sandbox's name on any backend (a container's, a pod's): the run id is part of it, so a rerun of the same task id
 * never adopts what a run that died left behind.
 */
export function sandboxName(request: Pick<SandboxRequest, 'taskId' | 'runId' | 'role'>): string {
  return request.role === 'check' ? `asp-${request.taskId}-${request.runId}-check` : `asp-${request.taskId}-${request.runId}`;
}

/** The runner's three streams: the protocol on stdout, the runner's own failures on stderr, the host's messages in. */
export interface SandboxStreams {
  stdout: Readable;
  stderr: Readable;
  stdin: Writable;
}

export interface Sandbox {
  /** The backend's id for it (a container id, a pod name), for logs. */
  readonly id: string;
  /**
   * The sandbox's spec does not hold the `--env` values (a pod's spec is readable by whoever may read pods): the host
   * sends them over the protocol, first (`env` message).
   */
  readonly envOverProtocol?: boolean | undefined;
  /**
   * The session may end at the runner's task.end, before the sandbox stops: its removal stops it at once, and its
   * `.asp/` stays readable until then (Docker). Without it the host waits for the sandbox to stop (a pod, whose
   * status lags and whose files go with its deletion).
   */
  readonly endsAtTaskEnd?: boolean | undefined;
  /** The image's content digest as the engine ran it, when only starting the sandbox tells it (a pod's imageID). */
  readonly imageId?: string | undefined;
  /**
   * Connects the streams and starts the runner; nothing it says is missed. Once per sandbox. `signal` (an interrupt)
   * ends a wait for the sandbox to start (a pod being scheduled or pulling its image) early.
   */
  open(signal?: AbortSignal): Promise<SandboxStreams>;
  /** Resolves with the runner's exit status when the sandbox stops. */
  wait(): Promise<number>;
  /**
   * After `wait`: whether the engine says the kernel's OOM killer struck in the sandbox (Docker's State.OOMKilled, a
   * pod's OOMKilled reason). Undefined when it cannot tell. A 137 alone is any SIGKILL: a step can send one too.
   */
  oomKilled?(): Promise<boolean | undefined>;
  /** Stops every process of the sandbox at once; one already stopped or gone is success. */
  kill(): Promise<void>;
  /** A tar of the sandbox's `.asp/`, for when the protocol did not stream it; undefined when it has none. */
  fetchArtifacts(): Promise<Readable | undefined>;
}

/** Something a backend made for asp, found again by its labels (the reaper's view). */
export interface OwnedObject {
  /** A sandbox (container, pod) or the workspace it ran on (volume). */
  kind: 'sandbox' | 'workspace';
  /** The backend's handle for removing it. */
  ref: string;
  name: string;
  labels: Record<string, string>;
  /** Undefined when the engine does not say. */
  createdAt: Date | undefined;
}

/**
 * A sandbox made before its task is known (a pool's, or the next one of a batch): everything a SandboxRequest fixes at
 * creation, hardened exactly as a task's, and nothing of a task's (no workspace contents, no `--env` values: those go
 * over the protocol once it is claimed).
 */
export interface WarmRequest {
  image: string;
  limits: Limits;
  runtime: string | undefined;
  /** asp's ownership labels of whoever keeps it (a pool's keeper, a batch), and `asp.pool` with its pool's key. */
  labels: Record<string, string>;
  /** Unique on the engine: the sandbox's and its workspace's names are made from it (warmNames). */
  seq: string;
}

/** A warm sandbox, ready: started, verified, its runner waiting for its first input. */
export interface WarmEntry {
  seq: string;
  pool: string;
}

/** An unclaimed warm sandbox as the engine lists it: stopped when the engine restarted under it (it is then retired). */
export interface IdleEntry extends WarmEntry {
  running: boolean;
  /** Retired already, its removal unfinished (an engine error): retire() finishes it. */
  retired?: boolean | undefined;
}

/** The names of a warm sandbox's objects: ready, claimed by a task, retired for removal; and its workspace. */
export function warmNames(seq: string): { ready: string; claimed: string; retired: string; workspace: string } {
  return { ready: `asp-pool-${seq}`, claimed: `asp-claimed-${seq}`, retired: `asp-retired-${seq}`, workspace: `asp-pool-ws-${seq}` };
}

/** Sandboxes started ahead of their tasks, where a backend can make them (Docker). */
export interface WarmSandboxes {
  /**
   * What else makes a sandbox what it is besides its image and limits: this asp's sandbox spec (its version, its
   * runner's image). Part of a pool's key, so a keeper of another asp (an upgrade since `asp pool up`) is never claimed from.
   */
  readonly fingerprint: string;
  /** Makes one ready. What it makes is removed again when it fails half-way; once ready, it is the keeper's. */
  prepare(request: WarmRequest): Promise<WarmEntry>;
  /** The ready ones of a pool (running, not claimed, not retired). */
  ready(pool: string): Promise<WarmEntry[]>;
  /** Every unclaimed one of a pool, running or not, and any retired one not yet gone (what its keeper retires). */
  idle(pool: string): Promise<IdleEntry[]>;
  /**
   * Takes a ready one for a task: of any number of callers, exactly one gets it, the rest undefined. `claim` labels
   * (the task's ownership) go on a marker that says who holds it, made before the take, so the reaper never takes a
   * held sandbox for its keeper's; without them (the keeper itself takes it) there is none. Its removal, and the
   * marker's, go on `scope` (keepable).
   */
  claim(entry: WarmEntry, scope: CleanupScope, claim?: { labels: Record<string, string>; id: string }): Promise<Sandbox | undefined>;
  /** Takes a ready one out of service and removes it: false when a task claimed it first (it is then the task's). */
  retire(entry: WarmEntry | IdleEntry): Promise<boolean>;
}

export interface SandboxBackend {
  /** Its name in logs and results ("docker", "k8s"). */
  readonly name: string;
  /** What a sandbox is there, in reports: a container, or a pod. */
  readonly sandboxKind: 'container' | 'pod';
  describe(): Promise<EngineInfo>;
  /** Whether the engine answers now (describe() may be asked once per process): throws when it does not. */
  ping(): Promise<void>;
  /** Makes sure the image is there (building asp's own when it is missing): what to run, and which image it is. */
  prepareImage(request: ImageRequest): Promise<PreparedImage>;
  /**
   * Creates the sandbox and its workspace, hardened as DESIGN.md says, and reads it back before it starts: one the
   * engine did not harden as asked is removed unstarted (HARDENING_IGNORED). The removal of each thing it makes
   * goes on `scope` the moment it exists (keepable: `--keep` leaves them), so a failure half-way leaks nothing.
   */
  createSandbox(request: SandboxRequest, scope: CleanupScope): Promise<Sandbox>;
  /** Everything of asp's that carries all of `labelFilters` ("key" or "key=value"). */
  listOwned(labelFilters: string[]): Promise<OwnedObject[]>;
  /** Removes one such object; one already gone is success. A workspace still in use is waited for a little. */
  removeOwned(object: OwnedObject): Promise<void>;
  /**
   * Removes the runner runtimes (the read-only runtime sandboxes of other images mount) that this asp no longer
   * uses, never one a sandbox still mounts; returns their names. `dryRun` only lists them.
   */
  removeStaleRuntimes(options: { dryRun: boolean }): Promise<string[]>;
  /** Warm sandboxes, where this backend has them. */
  readonly warm?: WarmSandboxes | undefined;
}
