import type { Clock } from '../core/clock.js';
import type { ProtocolMessage } from '../protocol/messages.js';
import type { GatewayGeneration } from '../core/records.js';
import type { EgressConnection } from '../egress/egress-relay.js';
import { ASP_VERSION } from '../core/version.js';

export type { GatewayGeneration };
import { costDetailsOf, generationName, usageDetailsOf } from './generation-details.js';
import { childIdFor, TRACE_SCHEMA, traceIdFor, type Observation, type ObservationKind, type TaskStatus, type TraceDocument, type TraceMetadata } from './trace-model.js';

/** Output kept on a step's span: the tail, the part that says why a step failed. */
const SPAN_OUTPUT_BYTES = 16 * 1024;
/** Input and output kept on a generation: prompts can be whole files, the trace must stay small. */
const GENERATION_IO_CHARS = 16 * 1024;
/**
 * Egress connections kept as spans (an npm install opens hundreds); past this they are counted in one summary span
 * and are in events.jsonl (capped), so a step that opens connections in a loop cannot grow the trace.
 */
const MAX_EGRESS_SPANS = 1000;

export interface TraceStart {
  taskId: string;
  runId: string;
  task: string;
  repo: string;
  ref: string | undefined;
  workspacePath: string;
  limits: Record<string, number>;
  /** Langfuse's session, user, environment and release (TraceRecord). */
  sessionId?: string | undefined;
  userId?: string | undefined;
  environment?: string | undefined;
  release?: string | undefined;
}

/** A step as the pipeline plans it: its name, its observation type when given, and the artifact it writes. */
export interface PlannedStep {
  name: string;
  type?: ObservationKind | undefined;
  artifact?: string | undefined;
}

interface OpenStep {
  observation: Observation;
  output: string;
  droppedChars: number;
}

/**
 * Builds the task's trace from host phases and protocol events as they happen. It holds only capped
 * output, so a chatty step cannot grow the trace without bound.
 */
export class TraceRecorder {
  readonly traceId: string;
  private readonly observations: Observation[] = [];
  private readonly steps = new Map<string, OpenStep>();
  private readonly rootId: string;
  private readonly started: Date;
  private commit: string | null = null;
  private image: string | null = null;
  private imageId: string | undefined;
  private branch: string;
  private generationCount = 0;
  private egressSpans = 0;
  /** The steps the pipeline means to run (the check's under their prefix), in order: their types, and the skipped ones. */
  private readonly planned = new Map<string, PlannedStep>();
  /** Connections past MAX_EGRESS_SPANS, by outcome. */
  private readonly egressUnrecorded = new Map<string, number>();

  constructor(
    private readonly start: TraceStart,
    private readonly clock: Clock,
  ) {
    this.traceId = traceIdFor(start.taskId, start.runId);
    this.rootId = childIdFor(this.traceId, 'root');
    this.started = clock.now();
    this.branch = start.ref ?? '';
  }

  /** The steps about to run: spans get their type, and those that never start a `skipped` span of their own. */
  planSteps(steps: PlannedStep[]): void {
    for (const step of steps) this.planned.set(step.name, step);
  }

  /** An agent step's output is what it wrote (its artifact, read by the host after the run), not its stdout. */
  setStepArtifact(step: string, artifact: string, value: unknown): void {
    const open = this.steps.get(step);
    if (!open) return;
    open.observation.output = value;
    open.observation.metadata = { ...open.observation.metadata, artifact: `.asp/${artifact}` };
  }

  /**
   * The repository's own test results of a step (read from its reports after the run): counts and the first
   * failing tests' names on its span, so a trace says which tests failed without its reader opening the files.
   */
  setStepTests(step: string, tests: { total: number; passed: number; failed: number; errors: number; skipped: number; failing: string[]; files: string[] }): void {
    const open = this.steps.get(step);
    if (!open) return;
    open.observation.metadata = { ...open.observation.metadata, tests };
  }

  /** Times one host-side phase (clone, volume fill, container start, copy-out, cleanup) as a span. */
  async phase<T>(name: string, action: () => Promise<T>): Promise<T> {
    const observation = this.open(`host:${name}`, `phase:${name}`, { phase: name }, 'host');
    try {
      const result = await action();
      this.close(observation, 'DEFAULT', null);
      return result;
    } catch (error) {
      this.close(observation, 'ERROR', error instanceof Error ? error.message : String(error));
      throw error;
    }
  }

  setSource(commit: string, branch: string): void {
    this.commit = commit;
    this.branch = branch;
  }

  setImage(image: string, id?: string | undefined): void {
    this.image = image;
    this.imageId = id;
  }

  /** The image's digest, when the engine told it only once the sandbox ran (a pod's imageID). */
  setImageId(id: string): void {
    this.imageId = id;
  }

  onMessage(message: ProtocolMessage): void {
    switch (message.type) {
      case 'step.start': {
        const observation = this.open(message.step, `step:${message.step}`, { command: message.run, timeoutMs: message.timeoutMs }, 'step');
        observation.input = { command: message.run };
        observation.asType = stepType(message.step, this.planned.get(message.step)?.type);
        this.steps.set(message.step, { observation, output: '', droppedChars: 0 });
        break;
      }
      case 'step.log': {
        const step = this.steps.get(message.step);
        if (!step) break;
        step.output += message.data;
        if (step.output.length > SPAN_OUTPUT_BYTES) {
          step.droppedChars += step.output.length - SPAN_OUTPUT_BYTES;
          step.output = step.output.slice(-SPAN_OUTPUT_BYTES);
        }
        break;
      }
      case 'step.end': {
        const step = this.steps.get(message.step);
        if (!step) break;
        this.finishStep(step, message.exitCode, message.durationMs, message.timedOut ?? false);
        break;
      }
      case 'generation': {
        this.generationCount += 1;
        const parent = this.steps.get(message.step)?.observation.id ?? this.rootId;
        const now = this.clock.now().toISOString();
        const usage = Object.fromEntries(Object.entries(message.usage).filter(([, value]) => value !== undefined)) as Record<string, number>;
        this.observations.push({
          id: childIdFor(this.traceId, `generation:${this.generationCount}`),
          traceId: this.traceId,
          parentObservationId: parent,
          type: 'GENERATION',
          name: generationName(message.step, message.model, message.agent),
          startTime: now,
          endTime: now,
          level: 'DEFAULT',
          statusMessage: null,
          input: null,
          output: null,
          metadata: { step: message.step },
          model: message.model,
          usageDetails: usage,
          ...(message.costUsd !== undefined ? { costDetails: { total: message.costUsd } } : {}),
        });
        break;
      }
      default:
        break;
    }
  }

  /** Records a gateway call: model, usage, cost, latency, and its input and output capped. */
  addGeneration(generation: GatewayGeneration): void {
    this.generationCount += 1;
    const failed = generation.status >= 400;
    const cost = costDetailsOf(generation.cost, generation.costUsd);
    this.observations.push({
      id: childIdFor(this.traceId, `generation:${this.generationCount}`),
      traceId: this.traceId,
      parentObservationId: this.steps.get(generation.step)?.observation.id ?? this.rootId,
      type: 'GENERATION',
      name: generationName(generation.step, generation.model, generation.agent),
      startTime: generation.startTime.toISOString(),
      endTime: generation.endTime.toISOString(),
      ...(generation.completionStartTime ? { completionStartTime: generation.completionStartTime.toISOString() } : {}),
      level: failed ? 'ERROR' : 'DEFAULT',
      statusMessage: failed ? `provider answered ${generation.status}` : null,
      input: capped(generation.input),
      output: capped(generation.output),
      metadata: {
        step: generation.step,
        provider: generation.provider,
        status: generation.status,
        attempts: generation.attempts,
        latencyMs: generation.endTime.getTime() - generation.startTime.getTime(),
        ...(generation.requestedModel ? { requestedModel: generation.requestedModel } : {}),
      },
      model: generation.model,
      ...(generation.modelParameters ? { modelParameters: generation.modelParameters } : {}),
      usageDetails: usageDetailsOf(generation.usage),
      ...(cost ? { costDetails: cost } : {}),
    });
  }

  /**
   * Records one egress connection (`--allow-host`) as a span under the step that opened it: where, whether and why,
   * the bytes each way. A refusal is a warning, a connection that failed or that asp cut an error.
   */
  addEgress(connection: EgressConnection): void {
    if (this.egressSpans >= MAX_EGRESS_SPANS) {
      this.egressUnrecorded.set(connection.outcome, (this.egressUnrecorded.get(connection.outcome) ?? 0) + 1);
      return;
    }
    this.egressSpans += 1;
    const target = `${connection.host.includes(':') ? `[${connection.host}]` : connection.host}:${connection.port}`;
    this.observations.push({
      id: childIdFor(this.traceId, `egress:${connection.step}:${connection.id}:${connection.startTime.getTime()}`),
      traceId: this.traceId,
      parentObservationId: this.steps.get(connection.step)?.observation.id ?? this.rootId,
      type: 'SPAN',
      name: `egress ${target}`,
      startTime: connection.startTime.toISOString(),
      endTime: connection.endTime.toISOString(),
      level: connection.outcome === 'refused' ? 'WARNING' : connection.outcome === 'closed' ? 'DEFAULT' : 'ERROR',
      statusMessage: connection.reason,
      input: { host: connection.host, port: connection.port, via: connection.via, ...(connection.method ? { method: connection.method } : {}) },
      output: { outcome: connection.outcome, address: connection.address, bytesIn: connection.bytesIn, bytesOut: connection.bytesOut },
      metadata: {
        kind: 'egress',
        step: connection.step,
        allowed: connection.allowed,
        outcome: connection.outcome,
        ...(connection.reason ? { reason: connection.reason } : {}),
        ...(connection.status !== null ? { status: connection.status } : {}),
      },
    });
  }

  /** Closes steps the sandbox never ended (killed at a deadline, interrupted). */
  abandonOpenSteps(reason: string, exitCode: number): void {
    for (const step of this.steps.values()) {
      if (step.observation.endTime !== null) continue;
      const durationMs = this.clock.now().getTime() - new Date(step.observation.startTime).getTime();
      this.finishStep(step, exitCode, durationMs, exitCode === 124);
      step.observation.statusMessage = reason;
    }
  }

  /**
   * `hitl`: whether the task asked for the HITL gate and whether its change now waits there, so that the first
   * export already says so (delivery updates it with the decision, hitl-trace.ts).
   */
  finish(outcome: { status: TaskStatus; exitCode: number; durationMs: number; error?: string | undefined; hitl?: { required: boolean; awaiting: boolean } | undefined }): TraceDocument {
    const end = this.clock.now();
    this.summarizeUnrecordedEgress(end);
    this.addSkippedSteps(end);
    const metadata: TraceMetadata = {
      task_id: this.start.taskId,
      target_repo: this.start.repo,
      target_branch: this.branch,
      workspace_path: this.start.workspacePath,
      pr_url: null,
      hitl_required: outcome.hitl?.required ?? false,
      hitl_status: outcome.hitl?.awaiting ? 'awaiting_approval' : 'not_required',
      run_id: this.start.runId,
      commit: this.commit,
      image: this.image,
      ...(this.imageId ? { image_id: this.imageId } : {}),
      limits: this.start.limits,
      exit_status: outcome.status,
      exit_code: outcome.exitCode,
    };
    const root: Observation = {
      id: this.rootId,
      traceId: this.traceId,
      parentObservationId: null,
      type: 'SPAN',
      name: this.start.taskId,
      startTime: this.started.toISOString(),
      endTime: end.toISOString(),
      level: outcome.status === 'passed' ? 'DEFAULT' : 'ERROR',
      statusMessage: outcome.error ?? (outcome.status === 'passed' ? null : outcome.status),
      input: { task: this.start.task },
      output: { status: outcome.status, exitCode: outcome.exitCode },
      // Nothing: Langfuse folds a root span's metadata into the trace's, which holds only the documented keys.
      metadata: {},
    };
    return {
      schema: TRACE_SCHEMA,
      trace: {
        id: this.traceId,
        name: this.start.taskId,
        timestamp: this.started.toISOString(),
        input: { task: this.start.task },
        output: { status: outcome.status, exitCode: outcome.exitCode, durationMs: outcome.durationMs },
        metadata,
        tags: hitlTags(['asp', outcome.status], metadata),
        ...(this.start.sessionId ? { sessionId: this.start.sessionId } : {}),
        ...(this.start.userId ? { userId: this.start.userId } : {}),
        environment: this.start.environment ?? 'default',
        ...(this.start.release ? { release: this.start.release } : {}),
        version: ASP_VERSION,
      },
      observations: [root, ...this.observations],
      scores: [],
    };
  }

  /** A span for each planned step that never started (after a failure), so the trace shows the whole plan. */
  private addSkippedSteps(end: Date): void {
    for (const step of this.planned.values()) {
      if (this.steps.has(step.name)) continue;
      const id = childIdFor(this.traceId, `step:${step.name}`);
      if (this.observations.some((observation) => observation.id === id)) continue;
      this.observations.push({
        id,
        traceId: this.traceId,
        parentObservationId: this.rootId,
        type: 'SPAN',
        asType: stepType(step.name, step.type),
        name: step.name,
        startTime: end.toISOString(),
        endTime: end.toISOString(),
        level: 'DEFAULT',
        statusMessage: 'skipped',
        input: null,
        output: { status: 'skipped' },
        metadata: { kind: 'step', status: 'skipped' },
      });
    }
  }

  /** One span for the connections past the cap: how many, by outcome (each is in events.jsonl, as far as its cap). */
  private summarizeUnrecordedEgress(end: Date): void {
    if (!this.egressUnrecorded.size || this.observations.some((observation) => observation.metadata.kind === 'egress-summary')) return;
    const counts = Object.fromEntries(this.egressUnrecorded);
    const total = [...this.egressUnrecorded.values()].reduce((sum, count) => sum + count, 0);
    this.observations.push({
      id: childIdFor(this.traceId, 'egress-summary'),
      traceId: this.traceId,
      parentObservationId: this.rootId,
      type: 'SPAN',
      name: `egress: ${total} more connection(s)`,
      startTime: end.toISOString(),
      endTime: end.toISOString(),
      level: this.egressUnrecorded.has('refused') || this.egressUnrecorded.has('cut') || this.egressUnrecorded.has('failed') ? 'WARNING' : 'DEFAULT',
      statusMessage: `${total} connection(s) past the first ${MAX_EGRESS_SPANS} have no span of their own: see events.jsonl`,
      input: null,
      output: counts,
      metadata: { kind: 'egress-summary', ...counts },
    });
  }

  private open(name: string, key: string, metadata: Record<string, unknown>, kind: string): Observation {
    const observation: Observation = {
      id: childIdFor(this.traceId, key),
      traceId: this.traceId,
      parentObservationId: this.rootId,
      type: 'SPAN',
      name,
      startTime: this.clock.now().toISOString(),
      endTime: null,
      level: 'DEFAULT',
      statusMessage: null,
      input: null,
      output: null,
      metadata: { kind, ...metadata },
    };
    this.observations.push(observation);
    return observation;
  }

  private close(observation: Observation, level: Observation['level'], statusMessage: string | null): void {
    observation.endTime = this.clock.now().toISOString();
    observation.level = level;
    observation.statusMessage = statusMessage;
  }

  private finishStep(step: OpenStep, exitCode: number, durationMs: number, timedOut: boolean): void {
    const failed = exitCode !== 0;
    this.close(step.observation, failed ? 'ERROR' : 'DEFAULT', timedOut ? 'deadline exceeded' : failed ? `exit code ${exitCode}` : null);
    step.observation.output = { exitCode, tail: outputTail(step.output, step.droppedChars) };
    step.observation.metadata = { ...step.observation.metadata, exitCode, durationMs, timedOut };
  }
}

function capped(value: unknown): unknown {
  const text = typeof value === 'string' ? value : JSON.stringify(value ?? null);
  if (text.length <= GENERATION_IO_CHARS) return value ?? null;
  return { truncated: `[asp: ${text.length - GENERATION_IO_CHARS} characters dropped]`, head: text.slice(0, GENERATION_IO_CHARS) };
}

/** The tags with the HITL state as one `hitl:<status>` tag, when the task has a gate (Langfuse filters by tags). */
export function hitlTags(tags: string[], metadata: Pick<TraceMetadata, 'hitl_required' | 'hitl_status'>): string[] {
  const kept = tags.filter((tag) => !tag.startsWith('hitl:'));
  return metadata.hitl_required ? [...kept, `hitl:${metadata.hitl_status}`] : kept;
}

/**
 * Langfuse's type of a step's span: what the pipeline says, else `<name>_agent` steps `agent` (review agents
 * `evaluator`), and every other step, the clean-room check's included, a `tool` (a command it ran).
 */
export function stepType(name: string, given: ObservationKind | undefined): ObservationKind {
  if (given) return given;
  const own = name.replace(/^check:/, '');
  if (own.endsWith('_agent')) return /review/.test(own) ? 'evaluator' : 'agent';
  return 'tool';
}

/** A step's output as its span keeps it: whole, or from a line boundary with a marker that says what is missing. */
function outputTail(output: string, dropped: number): string {
  if (dropped === 0) return output;
  const newline = output.indexOf('\n');
  // Cut at the first line boundary, unless the kept part is one long line.
  const from = newline !== -1 && newline < output.length - 1 ? newline + 1 : 0;
  return `[asp: the first ${dropped + from} characters of the output are not here; all of it is in .asp/events.jsonl (its step.log lines)]\n${output.slice(from)}`;
}
