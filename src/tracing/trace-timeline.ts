import { formatDuration } from '../config/units.js';
import type { TraceDelivery } from './publish-trace.js';
import type { TraceDocument } from './trace-model.js';
import type { ExportRecord } from './trace-store.js';
import { formatScoreValue, formatUsage, formatUsd, summarizeTrace, type TraceSummary } from './trace-summary.js';

const BAR_WIDTH = 24;

/** Where the trace is: for `show` and the report, one phrase. */
export function deliveryText(delivery: TraceDelivery, record: ExportRecord | undefined): string {
  if (delivery === 'exported' && record) return `in Langfuse: ${record.url}`;
  if (delivery === 'queued') return 'waiting in the outbox (asp traces push)';
  return 'local only';
}

/**
 * `asp traces show`: the run as a timeline a person reads in a terminal, each line a host phase or step with its
 * start, a bar placing it in the run, its duration and outcome; generations sit under their step.
 */
export function formatTimeline(document: TraceDocument, delivery: TraceDelivery, record?: ExportRecord): string {
  const summary = summarizeTrace(document);
  const lines = [
    `${summary.taskId}  ${summary.status.toUpperCase()}  ${formatDuration(summary.durationMs)}  exit ${summary.exitCode}`,
    `  task     ${oneLine(summary.task) || '(none)'}`,
    `  repo     ${summary.repo}${summary.branch ? ` @ ${summary.branch}` : ''}${summary.commit ? ` (${summary.commit.slice(0, 12)})` : ''}`,
    `  started  ${summary.startedAt}   run ${summary.runId}   trace ${summary.traceId}`,
    `  trace    ${deliveryText(delivery, record)}`,
  ];
  if (summary.error) lines.push(`  reason   ${oneLine(summary.error)}`);
  lines.push('');
  const total = Math.max(1, summary.durationMs);
  const nameWidth = Math.min(28, Math.max(8, ...summary.steps.map((step) => step.name.length), ...summary.phases.map((phase) => phase.name.length + 5)));
  const rows = [
    ...summary.phases.map((phase) => ({
      offset: phase.offsetMs,
      text: row(phase.offsetMs, phase.durationMs, total, `host ${phase.name}`, nameWidth, phase.failed ? `FAILED ${oneLine(phase.statusMessage ?? '')}` : ''),
      children: [] as string[],
    })),
    ...summary.steps.map((step) => ({
      offset: step.offsetMs,
      text: row(step.offsetMs, step.durationMs, total, step.name, nameWidth, stepOutcome(step)),
      children: generationLines(summary, step.id),
    })),
  ].sort((a, b) => a.offset - b.offset);
  for (const entry of rows) lines.push(entry.text, ...entry.children);
  const orphans = generationLines(summary, null);
  if (orphans.length) lines.push(...orphans);
  lines.push('', `  scores   ${summary.scores.map((score) => `${score.name} ${formatScoreValue(score.value)}`).join('  ·  ') || 'none'}`);
  if (summary.costUsd > 0) lines.push(`  cost     ${formatUsd(summary.costUsd)}`);
  lines.push(`  hitl     ${summary.hitl.required ? 'required' : 'not required'} (${summary.hitl.status})${summary.prUrl ? `   pr ${summary.prUrl}` : ''}`);
  return lines.join('\n') + '\n';
}

function row(offsetMs: number, durationMs: number | null, total: number, name: string, width: number, outcome: string): string {
  const from = Math.min(BAR_WIDTH - 1, Math.floor((offsetMs / total) * BAR_WIDTH));
  const length = durationMs === null ? BAR_WIDTH - from : Math.max(1, Math.min(BAR_WIDTH - from, Math.round((durationMs / total) * BAR_WIDTH)));
  const bar = `${' '.repeat(from)}${'█'.repeat(length)}`.padEnd(BAR_WIDTH, ' ');
  const took = durationMs === null ? 'unfinished' : formatDuration(durationMs);
  return `  +${formatDuration(offsetMs).padEnd(7)} |${bar}| ${name.padEnd(width)} ${took.padStart(10)}${outcome ? `  ${outcome}` : ''}`;
}

function stepOutcome(step: TraceSummary['steps'][number]): string {
  if (step.outcome === 'passed') return 'ok';
  if (step.outcome === 'timeout') return `TIMEOUT${step.statusMessage ? ` (${step.statusMessage})` : ''}`;
  if (step.outcome === 'unfinished') return 'UNFINISHED';
  if (step.outcome === 'skipped') return 'skipped';
  return `FAILED exit ${step.exitCode ?? '?'}`;
}

function generationLines(summary: TraceSummary, parentId: string | null): string[] {
  const stepIds = new Set(summary.steps.map((step) => step.id));
  return summary.generations
    .filter((generation) => (parentId === null ? generation.parentId === null || !stepIds.has(generation.parentId) : generation.parentId === parentId))
    .map(
      (generation) =>
        `  ${' '.repeat(9)} ${' '.repeat(BAR_WIDTH + 2)} └ ${generation.model}: ${formatUsage(generation.usage)}${generation.costUsd !== null ? `, ${formatUsd(generation.costUsd)}` : ''}`,
    );
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 160 ? `${flat.slice(0, 159)}…` : flat;
}
