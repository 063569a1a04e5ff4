import { valueAt } from '../core/record-guard.js';
import { generationCost } from './probe-scores.js';
import type { Observation, Score, TraceDocument } from './trace-model.js';

/** One trace as the reading commands show it (ls, show, the markdown report): times relative to the start. */
export interface TraceSummary {
  taskId: string;
  traceId: string;
  runId: string;
  task: string;
  status: string;
  exitCode: number;
  startedAt: string;
  durationMs: number;
  error: string | null;
  repo: string;
  branch: string;
  commit: string | null;
  image: string | null;
  prUrl: string | null;
  hitl: { required: boolean; status: string };
  steps: StepLine[];
  phases: PhaseLine[];
  generations: GenerationLine[];
  scores: Score[];
  costUsd: number;
}

export interface StepLine {
  id: string;
  name: string;
  outcome: 'passed' | 'failed' | 'timeout' | 'unfinished' | 'skipped';
  exitCode: number | null;
  offsetMs: number;
  durationMs: number | null;
  command: string | null;
  statusMessage: string | null;
}

export interface PhaseLine {
  name: string;
  offsetMs: number;
  durationMs: number | null;
  failed: boolean;
  statusMessage: string | null;
}

export interface GenerationLine {
  parentId: string | null;
  model: string;
  offsetMs: number;
  usage: Record<string, number>;
  costUsd: number | null;
}

export function summarizeTrace(document: TraceDocument): TraceSummary {
  const { trace } = document;
  const start = Date.parse(trace.timestamp);
  const root = document.observations.find((observation) => observation.parentObservationId === null);
  const output = (trace.output ?? {}) as { durationMs?: unknown };
  const input = (trace.input ?? {}) as { task?: unknown };
  const offset = (observation: Observation) => Math.max(0, Date.parse(observation.startTime) - start);
  const duration = (observation: Observation) => (observation.endTime ? Math.max(0, Date.parse(observation.endTime) - Date.parse(observation.startTime)) : null);
  const byStart = [...document.observations].sort((a, b) => Date.parse(a.startTime) - Date.parse(b.startTime));
  const generations = byStart.filter((observation) => observation.type === 'GENERATION');
  const costScore = document.scores.find((score) => score.name === 'probe_cost_usd');
  return {
    taskId: trace.name,
    traceId: trace.id,
    runId: trace.metadata.run_id,
    task: typeof input.task === 'string' ? input.task : '',
    status: trace.metadata.exit_status,
    exitCode: trace.metadata.exit_code,
    startedAt: trace.timestamp,
    durationMs: typeof output.durationMs === 'number' ? output.durationMs : root ? (duration(root) ?? 0) : 0,
    // The root's status message repeats the status unless something more precise (an error) was recorded.
    error: root?.level === 'ERROR' && root.statusMessage !== trace.metadata.exit_status ? root.statusMessage : null,
    repo: trace.metadata.target_repo,
    branch: trace.metadata.target_branch,
    commit: trace.metadata.commit,
    image: trace.metadata.image,
    prUrl: trace.metadata.pr_url,
    hitl: { required: trace.metadata.hitl_required, status: trace.metadata.hitl_status },
    steps: byStart
      .filter((observation) => observation.metadata.kind === 'step')
      .map((step) => {
        const exitCode = typeof step.metadata.exitCode === 'number' ? step.metadata.exitCode : null;
        const outcome = step.metadata.status === 'skipped' ? 'skipped' : step.endTime === null ? 'unfinished' : step.metadata.timedOut === true ? 'timeout' : exitCode === 0 ? 'passed' : 'failed';
        const command = valueAt(step.input, 'command');
        return {
          id: step.id,
          name: step.name,
          outcome,
          exitCode,
          offsetMs: offset(step),
          durationMs: duration(step),
          command: typeof command === 'string' ? command : null,
          statusMessage: step.statusMessage,
        };
      }),
    phases: byStart
      .filter((observation) => observation.metadata.kind === 'host')
      .map((phase) => ({ name: phase.name.replace(/^host:/, ''), offsetMs: offset(phase), durationMs: duration(phase), failed: phase.level === 'ERROR', statusMessage: phase.statusMessage })),
    generations: generations.map((generation) => ({
      parentId: generation.parentObservationId,
      model: generation.model ?? 'unknown',
      offsetMs: offset(generation),
      usage: generation.usageDetails ?? {},
      costUsd: generation.costDetails && Object.keys(generation.costDetails).length ? generationCost(generation) : null,
    })),
    scores: document.scores,
    costUsd: costScore ? costScore.value : generations.reduce((sum, generation) => sum + generationCost(generation), 0),
  };
}

/** Dollars with cents, and down to a hundredth of a cent below a dollar, where model costs live. */
export function formatUsd(value: number): string {
  if (value === 0) return '$0';
  if (value >= 1) return `$${value.toFixed(2)}`;
  const text = value.toFixed(4).replace(/0+$/, '');
  return `$${(text.split('.')[1] ?? '').length < 2 ? value.toFixed(2) : text}`;
}

/** A score for a person: whole numbers as they are, fractions to four significant digits. */
export function formatScoreValue(value: number): string {
  return String(Number.isInteger(value) ? value : Number(value.toPrecision(4)));
}

/** "1200 in / 300 out" (or whatever keys the usage has), for a line or a table cell. */
export function formatUsage(usage: Record<string, number>): string {
  const known = [
    ['input', 'in'],
    ['output', 'out'],
  ] as const;
  const parts = known.filter(([key]) => usage[key] !== undefined).map(([key, label]) => `${usage[key]} ${label}`);
  const rest = Object.entries(usage).filter(([key]) => key !== 'input' && key !== 'output' && key !== 'total');
  parts.push(...rest.map(([key, value]) => `${value} ${key}`));
  if (parts.length === 0 && usage.total !== undefined) parts.push(`${usage.total} tokens`);
  return parts.join(' / ') || 'no usage';
}
