/**
 * The task protocol: newline-delimited JSON on the sandbox container's stdout.
 *
 * This file is imported by both sides (the host supervisor and the in-container runner), so it must stay
 * free of dependencies: the sandbox image carries only this module and the runner, no node_modules.
 * Bump PROTOCOL_VERSION on any incompatible change; the host refuses a runner of another major version.
 */
export const PROTOCOL_VERSION = 1;

/** Every protocol line starts with this key so stray output is never mistaken for an event. */
export const PROTOCOL_TAG = 'asp';

export interface HelloMessage {
  type: 'hello';
  protocolVersion: number;
  runner: string;
  /**
   * The runner's own credentials as its kernel reports them (/proc/self/status), so the host can refuse a sandbox
   * whose engine echoed a hardening field back but did not apply it. `noNewPrivs` is absent where the kernel does
   * not say (gVisor).
   */
  identity?: RunnerIdentity;
}
export interface RunnerIdentity {
  uid: number;
  /** CapEff, as the 16 hex digits of /proc/self/status. */
  capEff: string;
  /** 2 when a seccomp filter applies. */
  seccomp: number;
  noNewPrivs?: number;
}
export interface StepStartMessage {
  type: 'step.start';
  step: string;
  run: string;
  timeoutMs: number;
  at: string;
}
export interface StepLogMessage {
  type: 'step.log';
  step: string;
  stream: 'stdout' | 'stderr';
  data: string;
}
export interface StepEndMessage {
  type: 'step.end';
  step: string;
  exitCode: number;
  durationMs: number;
  /** true when the runner stopped the step at its deadline (backstop; the host kills the container first). */
  timedOut?: boolean;
  /** bytes of output dropped past the cap. */
  droppedBytes?: number;
  /** Why the runner stopped the step, when it did (deadline backstop, disk limit). */
  reason?: string;
}
export interface ArtifactMessage {
  type: 'artifact';
  path: string;
  sha256: string;
  bytes: number;
}
export interface GenerationMessage {
  type: 'generation';
  step: string;
  /** The agent that made the call (AGENT_NAME_PATTERN): the generation is named after it, else after its step. */
  agent?: string;
  model: string;
  usage: { input?: number; output?: number; total?: number };
  costUsd?: number;
}
export interface TaskEndMessage {
  type: 'task.end';
  status: 'passed' | 'failed' | 'timeout';
  exitCode: number;
}
export interface WarningMessage {
  type: 'warning';
  message: string;
  /** Set when what went wrong is the engine's, not the task's: the host ends the task as an infrastructure error. */
  fault?: 'engine-disk-full';
}
/**
 * A model call from inside the sandbox (the in-container OpenAI-compatible endpoint), answered by the host's
 * model gateway on stdin (host-messages.ts). `body` is an OpenAI chat-completions request; it never holds a key.
 */
export interface ModelRequestMessage {
  type: 'model.request';
  id: string;
  step: string;
  /** The agent that asked, as its client named itself in the AGENT_HEADER header (absent when it did not). */
  agent?: string;
  body: Record<string, unknown>;
}

/**
 * How a client of the sandbox's model endpoint says which agent makes a call: a request header, because OpenAI
 * clients can add one without touching the body (`defaultHeaders`, `default_headers`) and a body field could be
 * refused by a strict server. A value that does not match AGENT_NAME_PATTERN is dropped, not forwarded.
 */
export const AGENT_HEADER = 'x-asp-agent';
/** An agent's name becomes an observation's name in Langfuse: short, printable, no spaces. */
export const AGENT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$/;

/**
 * A piece of `.asp/` as a tar, base64: the runner streams its artifacts this way when they are small enough
 * (ARTIFACTS_STREAM_MAX_BYTES), so the host need not ask the daemon for an archive. `artifacts.end` closes the
 * stream with its length and digest; a stream without a matching end is discarded and the host copies `.asp/`
 * out of the stopped container instead. Either way every entry is checked on the host.
 */
export interface ArtifactsChunkMessage {
  type: 'artifacts.chunk';
  data: string;
}
export interface ArtifactsEndMessage {
  type: 'artifacts.end';
  bytes: number;
  sha256: string;
}

/**
 * Egress (`--allow-host`): one connection a step opened through the runner's loopback proxy, as a channel of this
 * protocol. The runner asks (`net.open`); the host, which alone decides, dials and answers on stdin (`net.opened`
 * or `net.refused`, host-messages.ts). Bytes then go both ways: the step's as `net.data` lines (base64, at most
 * NET_CHUNK_BYTES each), the remote's as raw `net.data` frames on stdin. Each side may have at most NET_WINDOW_BYTES
 * of a channel's bytes unacknowledged (`net.ack` says how many were passed on), so one download can fill neither
 * stream: model answers and acks keep moving beside it. `net.end` is a half-close, `net.close` the end of both ways.
 */
export interface NetOpenMessage {
  type: 'net.open';
  id: string;
  step: string;
  host: string;
  port: number;
  /** How the client asked: a CONNECT tunnel (HTTPS), or a plain HTTP request the runner forwards (with its method). */
  via: 'connect' | 'http';
  method?: string;
}
export interface NetDataMessage {
  type: 'net.data';
  id: string;
  /** base64 of at most NET_CHUNK_BYTES bytes. */
  data: string;
}
export interface NetAckMessage {
  type: 'net.ack';
  id: string;
  bytes: number;
}
export interface NetEndMessage {
  type: 'net.end';
  id: string;
}
export interface NetCloseMessage {
  type: 'net.close';
  id: string;
  reason?: string;
}
export type NetSandboxMessage = NetOpenMessage | NetDataMessage | NetAckMessage | NetEndMessage | NetCloseMessage;

/** Raw bytes of one sandbox → host `net.data` line (base64 makes it a third longer, well under the 1 MiB line limit). */
export const NET_CHUNK_BYTES = 128 * 1024;
/** Bytes of one channel, one way, that may be in flight unacknowledged. */
export const NET_WINDOW_BYTES = 1024 * 1024;
/** The loopback port of the egress proxy inside the sandbox (its own network namespace: any port is free). */
export const EGRESS_PROXY_PORT = 3128;

export type ProtocolMessage =
  | HelloMessage
  | StepStartMessage
  | StepLogMessage
  | StepEndMessage
  | ArtifactMessage
  | GenerationMessage
  | TaskEndMessage
  | WarningMessage
  | ModelRequestMessage
  | ArtifactsChunkMessage
  | ArtifactsEndMessage
  | NetSandboxMessage;

export function encodeMessage(message: ProtocolMessage): string {
  return JSON.stringify({ [PROTOCOL_TAG]: PROTOCOL_VERSION, ...message }) + '\n';
}

/** Largest `.asp/` tar the runner streams on stdout; a bigger one is left for the host to copy out. */
export const ARTIFACTS_STREAM_MAX_BYTES = 16 * 1024 * 1024;
/** Raw bytes per `artifacts.chunk`: its base64 line stays well under the host's 1 MiB line limit. */
export const ARTIFACTS_CHUNK_BYTES = 384 * 1024;

/** What the host hands the runner: the first message on its stdin, and /workspace/.asp/task.json for steps to read. */
export interface SandboxTask {
  taskId: string;
  task: string;
  /** `argv`, when set, runs as it is, without a shell; `run` is then only how people read it. */
  /** `reports`: globs under the repository whose files the runner copies to `.asp/reports/<step>/` after the step. */
  steps: Array<{ name: string; run: string; argv?: string[] | undefined; timeoutMs: number; reports?: string[] | undefined }>;
  /** Wall-clock deadline (epoch ms) for the whole task, for steps to read; the backstop of a runner without `budgetMs`. */
  deadlineAt: number;
  /**
   * What was left of the task's deadline, in ms, when the host sent the task: the runner's own backstop counts it
   * down on its monotonic clock, so neither a wall clock set forward or back nor a daemon's machine whose clock is
   * not the host's moves it. Absent from the task.json steps read, and from older hosts.
   */
  budgetMs?: number;
  /** Bytes of output kept per step; the rest is dropped with a marker. */
  outputCapBytes: number;
  /** Size limit of /workspace: a step that grows it past this is stopped. */
  diskLimitBytes: number;
  /** The commit the host checked out: changes are bundled on top of it. */
  baseCommit: string;
  /** The branch the sandbox commits its changes on. */
  branch: string;
  /** Names of environment variables whose values the runner masks in all output. */
  secretEnv: string[];
  /** The other repositories of a multi-repo task, each with the commit it starts from. */
  repos?: Array<{ name: string; baseCommit: string }>;
  /** Present when the host runs a model gateway: the runner serves an OpenAI-compatible endpoint on this loopback port. */
  modelGateway?: { port: number; model: string };
  /**
   * Present in a clean-room check's sandbox: before its steps the runner checks out, as the step user, the commit
   * each repository's change came back as (the host fetched and checked it), and, with `files`, unpacks the check
   * dir (sent after the workspace) read-only at SANDBOX_CHECK_DIR. Nothing is bundled back.
   */
  check?: { checkout: Array<{ dir: string; commit: string; branch: string }>; files: boolean };
  /** Present when the task allows egress (`--allow-host`): the runner serves its HTTP(S) proxy on this loopback port. */
  egress?: { port: number };
}

export const SANDBOX_WORKSPACE = '/workspace';
/** Where the runner's own runtime is mounted, read-only, in a sandbox of any image but asp's own. */
export const SANDBOX_RUNTIME_DIR = '/opt/asp';
export const SANDBOX_REPO_DIR = '/workspace/repo';
export const SANDBOX_ARTIFACTS_DIR = '/workspace/.asp';
export const SANDBOX_TASK_FILE = '/workspace/.asp/task.json';
/** The check dir of a clean-room check (`--check-dir`): a tmpfs of the runner's, which steps can read, not write. */
export const SANDBOX_CHECK_DIR = '/workspace/check';
/** The task text, whole, for steps (`ASP_TASK_FILE`): `ASP_TASK` is cut to fit the kernel's limit on one variable. */
export const SANDBOX_TASK_TEXT_FILE = '/workspace/.asp/task.txt';
/**
 * Longest `ASP_TASK` a step gets, in bytes. Linux refuses any single environment string over 128 KiB (MAX_ARG_STRLEN)
 * with E2BIG, and all of them together must leave room for arguments; past this the text is cut with a marker.
 */
export const TASK_ENV_MAX_BYTES = 64 * 1024;
/** The sandbox's changes, as a git bundle of the commits on top of the base, and as a patch to read. */
export const CHANGE_BUNDLE = 'change.bundle';
export const CHANGE_PATCH = 'diff.patch';
/** More repositories of a multi-repo task: /workspace/repos/<name>, their changes in .asp/changes/<name>.{bundle,patch}. */
export const SANDBOX_REPOS_DIR = '/workspace/repos';
export const CHANGES_DIR = 'changes';
