import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { HostFrameReader, type HostMessage, type ModelChunkMessage, type ModelResponseMessage, type NetHostMessage } from '../src/protocol/host-messages.js';
import type { SandboxTask } from '../src/protocol/messages.js';
import { tool, toolEnv } from './runtime-tools.js';
import { asStepUser } from './step-user.js';

/** Model gateway answers: what stays on stdin once the task and the workspace are in, besides egress channels. */
export type ModelAnswer = ModelChunkMessage | ModelResponseMessage;

/** The egress proxy's side of stdin: channel messages, and the raw bytes of `net.data` frames. */
export interface NetListener {
  onMessage(message: NetHostMessage): void;
  onData(id: string, bytes: Buffer): void;
  onEnd(): void;
}

/** Keep this much of tar's complaints for the error message. */
const TAR_STDERR_BYTES = 4096;

/**
 * One tar on stdin, unpacked by a tar process as it arrives (with backpressure on stdin). `done` settles when tar
 * has unpacked all of it and the host said the archive ended.
 */
class TarUnpack {
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (error: Error) => void;
  private tar: ChildProcessByStdio<Writable, null, Readable> | undefined;
  private stderr = '';
  private ended = false;
  private tarDone = false;

  constructor(
    private readonly what: string,
    private readonly args: string[],
    private readonly asStep: boolean,
    private readonly input: Readable,
  ) {
    this.done = new Promise((resolve, reject) => ((this.resolve = resolve), (this.reject = reject)));
    this.done.catch(() => {}); // whoever awaits it sees the failure; an unawaited one must not crash the runner
  }

  start(): void {
    if (this.tar) return;
    const tar = this.asStep
      ? spawn(tool('tar'), this.args, asStepUser({ stdio: ['pipe', 'ignore', 'pipe'], env: toolEnv() }))
      : spawn(tool('tar'), this.args, { stdio: ['pipe', 'ignore', 'pipe'], env: toolEnv() });
    this.tar = tar;
    tar.stderr.on('data', (chunk: Buffer) => {
      if (this.stderr.length < TAR_STDERR_BYTES) this.stderr += chunk.toString('utf8');
    });
    tar.stdin.on('error', () => {}); // tar dying shows in its exit status
    tar.stdin.on('drain', () => this.input.resume());
    tar.on('error', (error) => this.reject(new Error(`cannot start tar to unpack the ${this.what}: ${error.message}`)));
    tar.on('close', (code, signal) => {
      // Whatever stdin still holds (at least the end message) must be read, even if tar's full pipe had paused it.
      this.input.resume();
      // tar may stop at the archive's end marker before the end message is read: then that settles it.
      if (code === 0) {
        this.tarDone = true;
        if (this.ended) this.resolve();
      } else {
        const why = this.stderr.trim().split('\n').slice(-3).join('; ');
        this.reject(new Error(`tar could not unpack the ${this.what} (exit ${code ?? signal})${why ? `: ${why}` : ''}`));
      }
    });
  }

  write(bytes: Buffer): void {
    const stdin = this.tar?.stdin;
    if (!stdin || stdin.destroyed || stdin.writableEnded || this.tarDone) return;
    if (!stdin.write(bytes)) this.input.pause();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.tar) this.tar.stdin.end();
    if (!this.tar || this.tarDone) this.resolve();
  }

  abandon(error: Error): void {
    if (this.ended) return;
    this.reject(error);
    this.tar?.kill('SIGKILL');
  }
}

/**
 * The runner's stdin, read as the host writes it: first the task, then the workspace tar (unpacked into `dir` as
 * the step user), for a clean-room check with a check dir its tar (unpacked into `checkDir` as the runner's own
 * user, so steps can only read it), then model gateway answers. A host that goes away before the task or the
 * tars are complete fails `task`, `workspace` or `checkFiles`; later, it ends the answers (`onAnswersEnd`).
 */
export class HostInput {
  readonly task: Promise<SandboxTask>;
  /** Settles when the host says the steps may run (StartMessage); rejects when it goes away first. */
  readonly started: Promise<void>;
  private resolveStarted!: () => void;
  private rejectStarted!: (error: Error) => void;
  private resolveTask!: (task: SandboxTask) => void;
  private rejectTask!: (error: Error) => void;
  private readonly workspaceTar: TarUnpack;
  private readonly checkTar: TarUnpack;
  /** Where raw frame bytes go: the tar whose `*.data` message came last. */
  private current: TarUnpack | undefined;
  private ended = false;
  private answers: ((message: ModelAnswer) => void) | undefined;
  private answersEnd: (() => void) | undefined;
  private net: NetListener | undefined;
  private sentEnv: Record<string, string> = {};

  constructor(input: Readable, dir: string, checkDir: string) {
    this.task = new Promise((resolve, reject) => ((this.resolveTask = resolve), (this.rejectTask = reject)));
    this.task.catch(() => {});
    this.started = new Promise((resolve, reject) => ((this.resolveStarted = resolve), (this.rejectStarted = reject)));
    this.started.catch(() => {});
    // As the step user, tar cannot chown: everything comes out owned by 1000, with the modes of the tar (-p).
    this.workspaceTar = new TarUnpack('workspace', ['-x', '-p', '--no-same-owner', '-f', '-', '-C', dir], true, input);
    // As the runner (root without CAP_CHOWN/FOWNER): owned by root, modes under the runner's umask, never writable by steps.
    this.checkTar = new TarUnpack('check dir', ['-x', '--no-same-owner', '--no-same-permissions', '-f', '-', '-C', checkDir], false, input);
    const reader = new HostFrameReader(
      (message) => this.onMessage(message),
      (bytes, frame) => (frame.type === 'net.data' ? this.net?.onData(frame.id, bytes) : this.current?.write(bytes)),
    );
    input.on('data', (chunk: Buffer) => reader.push(chunk));
    const end = () => this.onEnd();
    input.on('end', end);
    input.on('close', end);
    input.on('error', end);
  }

  get workspace(): Promise<void> {
    return this.workspaceTar.done;
  }

  /** The check dir's files, for a task that has them (`SandboxTask.check.files`). */
  get checkFiles(): Promise<void> {
    return this.checkTar.done;
  }

  /** Model gateway answers go to `onAnswer`; `onEnd` when the host is gone. */
  listen(onAnswer: (message: ModelAnswer) => void, onEnd: () => void): void {
    this.answers = onAnswer;
    this.answersEnd = onEnd;
    if (this.ended) onEnd();
  }

  /** Egress channel messages and bytes go to `listener` (the loopback proxy); its `onEnd` when the host is gone. */
  listenNet(listener: NetListener): void {
    this.net = listener;
    if (this.ended) listener.onEnd();
  }

  /** The variables the host sent with an `env` message (a pod's spec does not carry them); none otherwise. */
  get env(): Record<string, string> {
    return this.sentEnv;
  }

  private onMessage(message: HostMessage): void {
    switch (message.type) {
      case 'env':
        this.sentEnv = { ...this.sentEnv, ...message.env };
        return;
      case 'task':
        this.resolveTask(message.task);
        return;
      case 'workspace.data':
      case 'check.data': {
        // The bytes follow through onData; the unpacking starts with the first frame.
        this.current = message.type === 'workspace.data' ? this.workspaceTar : this.checkTar;
        this.current.start();
        return;
      }
      case 'workspace.end':
        this.workspaceTar.end();
        return;
      case 'check.end':
        this.checkTar.end();
        return;
      case 'start':
        this.resolveStarted();
        return;
      case 'model.chunk':
      case 'model.response':
        this.answers?.(message);
        return;
      default:
        // A `net.data` line's bytes follow through onData.
        if (message.type !== 'net.data') this.net?.onMessage(message);
    }
  }

  private onEnd(): void {
    if (this.ended) return;
    this.ended = true;
    const gone = new Error('the host closed stdin before the task and its workspace arrived');
    this.rejectTask(gone);
    this.rejectStarted(new Error('the host closed stdin before it said start'));
    this.workspaceTar.abandon(gone);
    this.checkTar.abandon(gone);
    this.answersEnd?.();
    this.net?.onEnd();
  }
}
