import { createWriteStream, type WriteStream } from 'node:fs';
import type { EgressRelay } from '../egress/egress-relay.js';
import type { ModelGateway } from '../models/model-gateway.js';
import type { ProtocolMessage } from '../protocol/messages.js';
import { SecretMasker } from '../protocol/secret-masker.js';
import type { TraceRecorder } from '../tracing/trace-recorder.js';
import { ArtifactStream } from './artifact-stream.js';
import type { Clock } from '../core/clock.js';
import type { Log } from '../core/log.js';
import type { HostReply } from './sandbox-session.js';
import { StepOutputPrinter } from './step-output.js';
import { StepTracker } from './step-records.js';

/** Cap on events.jsonl: the protocol is untrusted input, and step output in it is already capped per step. */
const EVENTS_CAP_BYTES = 64 * 1024 * 1024;

export interface StepEnd {
  exitCode: number;
  durationMs: number;
  timedOut: boolean;
}

/**
 * What the supervisor does with each protocol message of one task: masks secrets again (the protocol is untrusted
 * input; the runner masked them already), records it in events.jsonl (capped), feeds the trace, prints step output,
 * keeps which steps started and how they ended, passes model requests to the gateway, and gathers the streamed
 * `.asp/` tar.
 */
export class TaskEvents {
  readonly stepStarts = new Set<string>();
  readonly stepEnds = new Map<string, StepEnd>();
  /** What the runner said was the engine's fault (its disk full), when it did: the task is then asp's error, not its verdict. */
  engineFault: string | undefined;
  readonly artifacts = new ArtifactStream();
  /** What each step did on the protocol, for the `.asp/<step>.json` of a step killed before it could write one. */
  readonly steps: StepTracker;
  private file: WriteStream | undefined;
  private bytes = 0;
  private readonly secretMask: SecretMasker;
  /** One masker per step and stream: a secret split across two writes is still caught. */
  private readonly streamMaskers = new Map<string, SecretMasker>();
  private readonly printer: StepOutputPrinter;

  constructor(
    private readonly context: {
      taskId: string;
      secrets: string[];
      clock: Clock;
      log: Log;
      trace: TraceRecorder;
      warn: (message: string) => void;
      writeOutput: (text: string) => void;
      outputCap: number;
    },
  ) {
    this.secretMask = new SecretMasker(context.secrets);
    this.steps = new StepTracker(context.clock);
    this.printer = new StepOutputPrinter(context.writeOutput, context.outputCap);
  }

  mask(text: string): string {
    return this.secretMask.mask(text);
  }

  /** Starts events.jsonl; what is recorded before (nothing has run yet) is dropped. */
  open(file: string): void {
    this.file = createWriteStream(file);
  }

  record(entry: object): void {
    const line = JSON.stringify({ at: this.context.clock.now().toISOString(), ...entry }) + '\n';
    this.bytes += line.length;
    if (this.bytes <= EVENTS_CAP_BYTES) this.file?.write(line);
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.file ? this.file.end(resolve) : resolve()));
  }

  /** One message from the sandbox; `gateway` answers model requests, `egress` carries connections, when the task has them. */
  handle(message: ProtocolMessage, reply: HostReply, gateway: ModelGateway | undefined, egress?: EgressRelay | undefined): void {
    // Egress channels are data: each connection is recorded once, when it is over (task-egress.ts).
    if (message.type === 'net.open' || message.type === 'net.data' || message.type === 'net.ack' || message.type === 'net.end' || message.type === 'net.close') {
      if (egress) egress.handle(message);
      else if (message.type === 'net.open') this.context.warn(`sandbox: a connection to ${this.mask(message.host)}:${message.port} ignored: the task allows no egress`);
      return;
    }
    // The artifacts tar is data, not an event: only its end (length and digest) goes into events.jsonl.
    if (message.type === 'artifacts.chunk') return this.artifacts.chunk(message.data);
    if (message.type === 'artifacts.end') {
      this.artifacts.end(message);
      return this.record(message);
    }
    if (message.type === 'model.request') {
      // The request body is the sandbox's prompt: it goes to the provider and (capped) the trace, not events.jsonl.
      if (gateway) void gateway.handle(message, reply);
      else this.context.warn(`sandbox: model.request ${message.id} ignored: no model gateway is configured`);
      return;
    }
    if (message.type === 'step.log') {
      const key = `${message.step}\0${message.stream}`;
      let masker = this.streamMaskers.get(key);
      if (!masker) this.streamMaskers.set(key, (masker = new SecretMasker(this.context.secrets)));
      const data = masker.push(message.data);
      if (data) this.accept({ ...message, data });
      return;
    }
    if (message.type === 'step.end') {
      for (const stream of ['stdout', 'stderr'] as const) {
        const rest = this.streamMaskers.get(`${message.step}\0${stream}`)?.flush();
        if (rest) this.accept({ type: 'step.log', step: message.step, stream, data: rest });
      }
    }
    if (message.type === 'step.start') this.accept({ ...message, run: this.mask(message.run) });
    else if (message.type === 'warning') this.accept({ ...message, message: this.mask(message.message) });
    else this.accept(message);
  }

  /** A message already masked: recorded, traced, printed, and counted. */
  private accept(message: ProtocolMessage): void {
    const { taskId, log, trace, warn } = this.context;
    this.record(message);
    trace.onMessage(message);
    this.steps.onMessage(message);
    if (message.type === 'step.start') {
      this.stepStarts.add(message.step);
      log.info({ taskId, step: message.step }, `step ${message.step}: ${message.run}`);
    } else if (message.type === 'step.log') this.printer.data(message.step, message.stream, message.data);
    else if (message.type === 'step.end') {
      this.printer.flushStep(message.step);
      this.stepEnds.set(message.step, { exitCode: message.exitCode, durationMs: message.durationMs, timedOut: message.timedOut ?? false });
      log.info({ taskId, step: message.step, exitCode: message.exitCode, durationMs: message.durationMs }, `step ${message.step} ended with exit code ${message.exitCode}`);
    } else if (message.type === 'warning') {
      warn(`sandbox: ${message.message}`);
      if (message.fault) this.engineFault ??= message.message;
    }
  }
}
