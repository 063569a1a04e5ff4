import { PassThrough, Readable, Writable } from 'node:stream';
import tarStream from 'tar-stream';
import { AspError } from '../../src/core/asp-error.js';
import type { CleanupScope } from '../../src/core/cleanup-stack.js';
import type { EngineInfo, ImageRequest, OwnedObject, PreparedImage, Sandbox, SandboxBackend, SandboxRequest, SandboxStreams } from '../../src/backend/sandbox-backend.js';
import { runnerCapEff } from '../../src/backend/sandbox-policy.js';
import { HostFrameReader, type HostMessage } from '../../src/protocol/host-messages.js';
import { encodeMessage, PROTOCOL_VERSION, type ProtocolMessage, type RunnerIdentity, type SandboxTask } from '../../src/protocol/messages.js';

/** Every backend operation a test can make fail or hang. */
export type Operation = 'ping' | 'describe' | 'prepareImage' | 'create volume' | 'create container' | 'open' | 'kill' | 'fetchArtifacts' | 'remove container' | 'remove volume';

/** What the fake runner does with one step of the task it is sent. */
export interface StepScript {
  /** Printed on the step's stdout, as one `step.log`. */
  output?: string;
  exitCode?: number;
  /** Never ends: only a kill (a deadline, an interrupt) stops it. */
  hang?: boolean;
  durationMs?: number;
  /** The runner dies in this step with 137 and says nothing more: of a SIGKILL (a step's), or of the OOM killer (the engine says OOMKilled). */
  killsRunner?: 'sigkill' | 'oom';
}

export interface RunnerScript {
  /** By step name; a step not named here prints nothing and passes. */
  steps?: Record<string, StepScript>;
  /** What the hello reports; default: the identity identityMismatch wants (uid 0, the runner's caps, seccomp, no-new-privs). */
  identity?: RunnerIdentity;
  /** The files of `.asp/` that fetchArtifacts hands back (path under `.asp/` → content). */
  artifacts?: Record<string, string>;
  /** The `.asp/` archive sends its first entry and then nothing more, as a copy-out stuck in the daemon. */
  stallArtifacts?: boolean;
}

/** A hung operation: `reached` settles when it is in flight, `release()` lets it go on. */
export interface Gate {
  reached: Promise<void>;
  release(): void;
}

export const HARDENED_IDENTITY: RunnerIdentity = { uid: 0, capEff: runnerCapEff(), seccomp: 2, noNewPrivs: 1 };

/**
 * A SandboxBackend held in memory: no daemon, no containers. It records each operation in `calls` in the order
 * made ('create volume vol-1', 'open box-1', 'remove container box-1', ...), knows what is still `leftovers()`,
 * and can be told to fail an operation (`fail`) or hang it until released (`hold`). Each sandbox runs a scripted
 * fake runner that speaks the task protocol as sandbox/main.ts does: hello at once, steps only after `start`.
 */
export class FakeBackend implements SandboxBackend {
  readonly name = 'fake';
  readonly sandboxKind = 'container';
  readonly calls: string[] = [];
  /** What the fake runners said and heard, in order ('hello', 'task', 'workspace.end', 'start', 'step.start slow', 'exit 137'). */
  readonly runnerLog: string[] = [];
  readonly requests: SandboxRequest[] = [];
  /** Containers by name (with the volume each mounts) and volumes, as long as they exist. */
  readonly #containers = new Map<string, { volume: string; labels: Record<string, string> }>();
  readonly #volumes = new Map<string, Record<string, string>>();
  readonly #failures = new Map<Operation, { error: Error; times: number }>();
  readonly #holds = new Map<Operation, { reached: () => void; released: Promise<void> }>();
  readonly #waiters: Array<{ entry: string; resolve: () => void }> = [];
  readonly #sandboxes = new Map<string, FakeSandbox>();
  #made = 0;

  constructor(public script: RunnerScript = {}) {}

  /** Makes `operation` throw `error`, every time or the next `times` times. */
  fail(operation: Operation, error: Error, options: { times?: number } = {}): void {
    this.#failures.set(operation, { error, times: options.times ?? Infinity });
  }

  /** Hangs the next `operation` (after it is recorded) until the gate is released. */
  hold(operation: Operation): Gate {
    let reached!: () => void;
    let release!: () => void;
    const gate = { reached: new Promise<void>((resolve) => (reached = resolve)), release: () => release() };
    this.#holds.set(operation, { reached, released: new Promise<void>((resolve) => (release = resolve)) });
    return gate;
  }

  /** Settles once `entry` is in `calls` or `runnerLog` (e.g. 'step.start slow', 'fetchArtifacts box-1'). */
  seen(entry: string): Promise<void> {
    if (this.calls.includes(entry) || this.runnerLog.includes(entry)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ entry, resolve }));
  }

  /** What exists still: 'container box-1', 'volume vol-1'. */
  leftovers(): string[] {
    return [...[...this.#containers.keys()].map((name) => `container ${name}`), ...[...this.#volumes.keys()].map((name) => `volume ${name}`)];
  }

  async ping(): Promise<void> {
    await this.enter('ping');
  }

  async describe(): Promise<EngineInfo> {
    await this.enter('describe');
    return { endpoint: 'fake://engine', serverVersion: '27.0.0', apiVersion: '1.46', os: 'linux', arch: 'x86_64', runtimes: ['runc'], cpus: 8, memoryBytes: 16 * 1024 ** 3 };
  }

  async prepareImage(request: ImageRequest): Promise<PreparedImage> {
    await this.enter('prepareImage');
    return { ref: request.image ?? 'asp-sandbox:fake', id: undefined };
  }

  async createSandbox(request: SandboxRequest, scope: CleanupScope): Promise<Sandbox> {
    this.requests.push(request);
    this.#made += 1;
    const volume = `vol-${this.#made}`;
    const container = `box-${this.#made}`;
    await this.enter('create volume', volume);
    this.#volumes.set(volume, request.labels);
    // As DockerBackend: deferred first, so undone last (a volume a container still mounts cannot go), both keepable.
    scope.defer(`volume ${volume}`, () => this.removeVolume(volume), { keepable: true });
    await this.enter('create container', container);
    this.#containers.set(container, { volume, labels: request.labels });
    scope.defer(`container ${container}`, () => this.removeContainer(container), { keepable: true });
    const sandbox = new FakeSandbox(this, container);
    this.#sandboxes.set(container, sandbox);
    return sandbox;
  }

  async listOwned(labelFilters: string[]): Promise<OwnedObject[]> {
    const matches = (labels: Record<string, string>) =>
      labelFilters.every((filter) => {
        const [key = '', value] = filter.split('=');
        return value === undefined ? key in labels : labels[key] === value;
      });
    return [
      ...[...this.#containers].filter(([, { labels }]) => matches(labels)).map(([name, { labels }]): OwnedObject => ({ kind: 'sandbox', ref: name, name, labels, createdAt: undefined })),
      ...[...this.#volumes].filter(([, labels]) => matches(labels)).map(([name, labels]): OwnedObject => ({ kind: 'workspace', ref: name, name, labels, createdAt: undefined })),
    ];
  }

  removeOwned(object: OwnedObject): Promise<void> {
    return object.kind === 'sandbox' ? this.removeContainer(object.ref) : this.removeVolume(object.ref);
  }

  /** This fake keeps no runner runtime: there is never a stale one. */
  removeStaleRuntimes(): Promise<string[]> {
    return Promise.resolve([]);
  }

  /** As `docker rm -f`: a running runner is killed with its container; one already gone is success. */
  async removeContainer(name: string): Promise<void> {
    await this.enter('remove container', name);
    this.#sandboxes.get(name)?.runner?.exit(137);
    this.#containers.delete(name);
  }

  /** As Docker: a volume a container still mounts is refused (409); one already gone is success. */
  async removeVolume(name: string): Promise<void> {
    await this.enter('remove volume', name);
    if ([...this.#containers.values()].some((container) => container.volume === name)) {
      throw new AspError('DOCKER_CONFLICT', `cannot remove volume ${name}: volume is in use`);
    }
    this.#volumes.delete(name);
  }

  /** Records an operation, hangs it when held, throws when told to. */
  async enter(operation: Operation | 'wait', target?: string): Promise<void> {
    this.note(this.calls, target ? `${operation} ${target}` : operation);
    if (operation === 'wait') return;
    const held = this.#holds.get(operation);
    if (held) {
      this.#holds.delete(operation);
      held.reached();
      await held.released;
    }
    const failure = this.#failures.get(operation);
    if (failure && failure.times > 0) {
      failure.times -= 1;
      throw failure.error;
    }
  }

  /** Adds `entry` to `list` and wakes whoever waits for it (`seen`). */
  note(list: string[], entry: string): void {
    list.push(entry);
    for (const waiter of this.#waiters.filter((candidate) => candidate.entry === entry)) {
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }
}

class FakeSandbox implements Sandbox {
  runner: FakeRunner | undefined;
  readonly #exited: Promise<number>;
  #exit!: (code: number) => void;

  constructor(
    private readonly backend: FakeBackend,
    readonly id: string,
  ) {
    this.#exited = new Promise((resolve) => (this.#exit = resolve));
  }

  async open(): Promise<SandboxStreams> {
    await this.backend.enter('open', this.id);
    if (this.runner) throw new Error(`sandbox ${this.id} opened twice`);
    this.runner = new FakeRunner(this.backend.script, (entry) => this.backend.note(this.backend.runnerLog, entry), this.#exit);
    return this.runner.streams;
  }

  async wait(): Promise<number> {
    await this.backend.enter('wait', this.id);
    return this.#exited;
  }

  oomKilled(): Promise<boolean | undefined> {
    return Promise.resolve(this.runner?.oomKilled ?? false);
  }

  async kill(): Promise<void> {
    await this.backend.enter('kill', this.id);
    if (this.runner) this.runner.exit(137);
    else this.#exit(137);
  }

  async fetchArtifacts(): Promise<Readable | undefined> {
    await this.backend.enter('fetchArtifacts', this.id);
    const { artifacts = {}, stallArtifacts = false } = this.backend.script;
    const tar = await artifactsTar(artifacts);
    if (!stallArtifacts) return Readable.from([tar]);
    // The first header block (the `.asp/` directory) and then silence: only destroying the stream ends it.
    const stalled = new PassThrough();
    stalled.write(tar.subarray(0, 512));
    return stalled;
  }
}

/**
 * The runner of one sandbox, scripted: says hello with its identity when the sandbox opens, reads the host's frames
 * on stdin (host-messages.ts), and runs the steps of the `task` message once the host says `start`, stopping at
 * the first that fails, then `task.end` and exit (0 passed, 1 failed), as sandbox/main.ts does. `exit` is a kill too.
 */
class FakeRunner {
  readonly streams: SandboxStreams;
  #task: SandboxTask | undefined;
  #exited = false;
  /** What the engine would say of the runner's end: killed by the kernel's OOM killer. */
  oomKilled = false;
  readonly #stdout = new PassThrough();
  readonly #stderr = new PassThrough();

  constructor(
    private readonly script: RunnerScript,
    private readonly say: (entry: string) => void,
    private readonly onExit: (code: number) => void,
  ) {
    const reader = new HostFrameReader(
      (message) => this.hear(message),
      () => {},
    );
    const stdin = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        reader.push(chunk);
        done();
      },
    });
    this.streams = { stdout: this.#stdout, stderr: this.#stderr, stdin };
    this.emit({ type: 'hello', protocolVersion: PROTOCOL_VERSION, runner: 'fake-runner', identity: script.identity ?? HARDENED_IDENTITY });
    this.say('hello');
  }

  exit(code: number): void {
    if (this.#exited) return;
    this.#exited = true;
    this.say(`exit ${code}`);
    this.#stdout.end();
    this.#stderr.end();
    this.streams.stdin.destroy();
    this.onExit(code);
  }

  private hear(message: HostMessage): void {
    if (message.type === 'task') this.#task = message.task;
    if (message.type !== 'task' && message.type !== 'workspace.end' && message.type !== 'start') return;
    this.say(message.type);
    if (message.type === 'start') void this.run();
  }

  private async run(): Promise<void> {
    const steps = this.#task?.steps ?? [];
    let status: 'passed' | 'failed' = 'passed';
    for (const step of steps) {
      const script = this.script.steps?.[step.name] ?? {};
      // A turn of the event loop between messages, as a process writing to a pipe gives the reader.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.#exited) return;
      this.emit({ type: 'step.start', step: step.name, run: step.run, timeoutMs: step.timeoutMs, at: new Date().toISOString() });
      this.say(`step.start ${step.name}`);
      if (script.output) this.emit({ type: 'step.log', step: step.name, stream: 'stdout', data: script.output });
      if (script.hang) return;
      if (script.killsRunner) {
        this.oomKilled = script.killsRunner === 'oom';
        return this.exit(137);
      }
      const exitCode = script.exitCode ?? 0;
      this.emit({ type: 'step.end', step: step.name, exitCode, durationMs: script.durationMs ?? 5 });
      this.say(`step.end ${step.name} ${exitCode}`);
      if (exitCode !== 0) {
        status = 'failed';
        break;
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#exited) return;
    this.emit({ type: 'task.end', status, exitCode: status === 'passed' ? 0 : 1 });
    this.exit(status === 'passed' ? 0 : 1);
  }

  private emit(message: ProtocolMessage): void {
    if (!this.#exited) this.#stdout.write(encodeMessage(message));
  }
}

/** A tar of `.asp/` as a container's archive API gives it: the directory, then its files. */
async function artifactsTar(files: Record<string, string>): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => {
      if (Buffer.isBuffer(chunk)) chunks.push(chunk);
    });
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  pack.entry({ name: '.asp', type: 'directory', mode: 0o755 });
  for (const [name, content] of Object.entries(files)) pack.entry({ name: `.asp/${name}`, mode: 0o644 }, content);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}
