import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { HostFrameReader, type HostMessage, type ModelChunkMessage, type ModelResponseMessage } from '../src/protocol/host-messages.js';
import type { SandboxTask } from '../src/protocol/messages.js';
import { asStepUser } from './step-user.js';

/** Model gateway answers: what stays on stdin once the task and the workspace are in. */
export type ModelAnswer = ModelChunkMessage | ModelResponseMessage;

/** Keep this much of tar's complaints for the error message. */
const TAR_STDERR_BYTES = 4096;

/**
 * The runner's stdin, read as the host writes it: first the task, then the workspace tar (unpacked into `dir` by
 * tar as it arrives, with backpressure), then model gateway answers. A host that goes away before the task or the
 * workspace is complete fails `task` or `workspace`; later, it ends the answers (`onAnswersEnd`).
 */
export class HostInput {
  readonly task: Promise<SandboxTask>;
  readonly workspace: Promise<void>;
  private resolveTask!: (task: SandboxTask) => void;
  private rejectTask!: (error: Error) => void;
  private resolveWorkspace!: () => void;
  private rejectWorkspace!: (error: Error) => void;
  private tar: ReturnType<typeof spawn> | undefined;
  private tarStderr = '';
  private workspaceEnded = false;
  private tarDone = false;
  private ended = false;
  private answers: ((message: ModelAnswer) => void) | undefined;
  private answersEnd: (() => void) | undefined;

  constructor(
    private readonly input: Readable,
    private readonly dir: string,
  ) {
    this.task = new Promise((resolve, reject) => ((this.resolveTask = resolve), (this.rejectTask = reject)));
    this.workspace = new Promise((resolve, reject) => ((this.resolveWorkspace = resolve), (this.rejectWorkspace = reject)));
    // Whoever awaits them sees the failure; an unawaited one must not crash the runner.
    this.task.catch(() => {});
    this.workspace.catch(() => {});
    const reader = new HostFrameReader(
      (message) => this.onMessage(message),
      (bytes) => this.onData(bytes),
    );
    input.on('data', (chunk: Buffer) => reader.push(chunk));
    const end = () => this.onEnd();
    input.on('end', end);
    input.on('close', end);
    input.on('error', end);
  }

  /** Model gateway answers go to `onAnswer`; `onEnd` when the host is gone. */
  listen(onAnswer: (message: ModelAnswer) => void, onEnd: () => void): void {
    this.answers = onAnswer;
    this.answersEnd = onEnd;
    if (this.ended) onEnd();
  }

  private onMessage(message: HostMessage): void {
    switch (message.type) {
      case 'task':
        this.resolveTask(message.task);
        return;
      case 'workspace.data':
        // The bytes follow through onData; the unpacking starts with the first frame.
        this.startTar();
        return;
      case 'workspace.end':
        this.finishWorkspace();
        return;
      default:
        this.answers?.(message);
    }
  }

  private startTar(): void {
    if (this.tar) return;
    // As the step user, tar cannot chown: everything comes out owned by 1000, with the modes of the tar (-p).
    const tar = spawn('tar', ['-x', '-p', '--no-same-owner', '-f', '-', '-C', this.dir], asStepUser({ stdio: ['pipe', 'ignore', 'pipe'] }));
    this.tar = tar;
    tar.stderr?.on('data', (chunk: Buffer) => {
      if (this.tarStderr.length < TAR_STDERR_BYTES) this.tarStderr += chunk.toString('utf8');
    });
    tar.stdin?.on('error', () => {}); // tar dying shows in its exit status
    tar.stdin?.on('drain', () => this.input.resume());
    tar.on('error', (error) => this.rejectWorkspace(new Error(`cannot start tar to unpack the workspace: ${error.message}`)));
    tar.on('close', (code, signal) => {
      // Whatever stdin still holds (at least `workspace.end`) must be read, even if tar's full pipe had paused it.
      this.input.resume();
      // tar may stop at the archive's end marker before `workspace.end` is read: then that settles it.
      if (code === 0) {
        this.tarDone = true;
        if (this.workspaceEnded) this.resolveWorkspace();
      } else {
        const why = this.tarStderr.trim().split('\n').slice(-3).join('; ');
        this.rejectWorkspace(new Error(`tar could not unpack the workspace (exit ${code ?? signal})${why ? `: ${why}` : ''}`));
      }
    });
  }

  private onData(bytes: Buffer): void {
    const stdin = this.tar?.stdin;
    if (!stdin || stdin.destroyed || stdin.writableEnded || this.tarDone) return;
    if (!stdin.write(bytes)) this.input.pause();
  }

  private finishWorkspace(): void {
    if (this.workspaceEnded) return;
    this.workspaceEnded = true;
    if (this.tar) this.tar.stdin?.end();
    if (!this.tar || this.tarDone) this.resolveWorkspace();
  }

  private onEnd(): void {
    if (this.ended) return;
    this.ended = true;
    const gone = new Error('the host closed stdin before the task and its workspace arrived');
    this.rejectTask(gone);
    if (!this.workspaceEnded) {
      this.rejectWorkspace(gone);
      this.tar?.kill('SIGKILL');
    }
    this.answersEnd?.();
  }
}
