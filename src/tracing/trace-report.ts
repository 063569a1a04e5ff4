import { formatDuration } from '../config/units.js';
import { actualsOf, COMPLEXITY_SCORE, type ProbeTarget } from './probe-model.js';
import type { TraceDelivery } from './publish-trace.js';
import type { TraceDocument } from './trace-model.js';
import type { ExportRecord } from './trace-store.js';
import { formatUsage, formatUsd, summarizeTrace, type StepLine } from './trace-summary.js';

/**
 * `asp traces export --format md`: the report the seed asks for, readable in a PR comment or a CI summary:
 * task, repository, outcome, steps with timings, generations, PROBE scores, the HITL decision, and the link to the
 * trace in Langfuse when it was exported.
 */
export function markdownReport(document: TraceDocument, delivery: TraceDelivery, record?: ExportRecord): string {
  const summary = summarizeTrace(document);
  const langfuse =
    delivery === 'exported' && record ? `[${summary.traceId}](${record.url})` : delivery === 'queued' ? 'not yet: waiting in the outbox (`asp traces push`)' : 'not exported (local JSON only)';
  const out: string[] = [
    `# asp task report: ${cell(summary.taskId)}`,
    '',
    '| | |',
    '|---|---|',
    `| Outcome | **${summary.status}** (exit ${summary.exitCode}) in ${formatDuration(summary.durationMs)} |`,
    `| Repository | ${cell(summary.repo)} |`,
    `| Branch | ${cell(summary.branch) || '(default)'} |`,
    `| Commit | ${summary.commit ? `\`${summary.commit}\`` : 'unknown'} |`,
    `| Image | ${summary.image ? `\`${summary.image}\`` : 'unknown'} |`,
    `| Started | ${summary.startedAt} |`,
    `| Run | \`${summary.runId}\` |`,
    `| Trace | \`${summary.traceId}\` |`,
    `| Langfuse | ${langfuse} |`,
  ];
  if (summary.error) out.push(`| Reason | ${cell(summary.error)} |`);
  out.push(
    '',
    '## Task',
    '',
    summary.task
      ? summary.task
          .split('\n')
          .map((line) => `> ${line}`)
          .join('\n')
      : '_(no instruction given)_',
  );

  out.push('', '## Steps', '');
  if (summary.steps.length === 0) out.push('_No step ran._');
  else {
    out.push('| # | Step | Outcome | Started at | Duration | Exit code | Command |', '|---|---|---|---|---|---|---|');
    summary.steps.forEach((step, index) => {
      out.push(
        `| ${index + 1} | ${cell(step.name)} | ${stepOutcome(step)} | +${formatDuration(step.offsetMs)} | ${step.durationMs === null ? '—' : formatDuration(step.durationMs)} | ${step.exitCode ?? '—'} | ${step.command ? `\`${cell(step.command)}\`` : ''} |`,
      );
    });
  }

  if (summary.generations.length) {
    const stepNames = new Map(summary.steps.map((step) => [step.id, step.name]));
    out.push('', '## Generations', '', '| Step | Model | Usage | Cost |', '|---|---|---|---|');
    for (const generation of summary.generations) {
      out.push(
        `| ${cell((generation.parentId && stepNames.get(generation.parentId)) || 'task')} | ${cell(generation.model)} | ${formatUsage(generation.usage)} | ${generation.costUsd === null ? '—' : formatUsd(generation.costUsd)} |`,
      );
    }
  }

  out.push('', '## PROBE scores', '');
  if (summary.scores.length === 0) out.push('_No scores._');
  else {
    out.push('| Score | Value | From |', '|---|---|---|');
    for (const score of summary.scores) out.push(`| ${score.name} | ${score.value} | ${cell(score.comment ?? '')} |`);
  }

  out.push(...probeEstimateSection(document));

  out.push('', '## Human review (HITL)', '', `- Required: ${summary.hitl.required ? 'yes' : 'no'}`, `- Decision: ${cell(summary.hitl.status)}`, `- Pull request: ${summary.prUrl ?? 'none'}`);

  if (summary.phases.length) {
    out.push('', '## Host phases', '', '| Phase | Started at | Duration | Outcome |', '|---|---|---|---|');
    for (const phase of summary.phases) {
      out.push(
        `| ${phase.name} | +${formatDuration(phase.offsetMs)} | ${phase.durationMs === null ? '—' : formatDuration(phase.durationMs)} | ${phase.failed ? `failed: ${cell(phase.statusMessage ?? '')}` : 'ok'} |`,
      );
    }
  }
  return out.join('\n') + '\n';
}

/** Estimate vs actual, when the PROBE model gave an estimate at publish time (see probe-estimate.ts). */
function probeEstimateSection(document: TraceDocument): string[] {
  const scores = new Map(document.scores.map((score) => [score.name, score]));
  const actuals = actualsOf(document);
  const rows: Array<[string, string, ProbeTarget, (value: number) => string]> = [
    ['Latency', 'probe_estimate_latency_ms', 'latency_ms', (ms) => formatDuration(ms)],
    ['Tokens', 'probe_estimate_tokens', 'tokens', (tokens) => String(tokens)],
    ['Cost', 'probe_estimate_cost_usd', 'cost_usd', (usd) => formatUsd(usd)],
  ];
  const lines = rows.flatMap(([label, name, target, format]) => {
    const estimated = scores.get(name);
    if (!estimated || !actuals) return [];
    const actual = actuals[target];
    const error = actual === 0 ? '—' : `${(((estimated.value - actual) / actual) * 100).toFixed(1)}%`;
    return [`| ${label} | ${format(estimated.value)} | ${format(actual)} | ${error} |`];
  });
  if (lines.length === 0) return [];
  const complexity = scores.get(COMPLEXITY_SCORE)?.value;
  return ['', '## PROBE estimate vs actual', '', `Complexity estimated at planning: ${complexity ?? 'unknown'}.`, '', '| Target | Estimate | Actual | Error |', '|---|---|---|---|', ...lines];
}

function stepOutcome(step: StepLine): string {
  switch (step.outcome) {
    case 'passed':
      return 'passed';
    case 'timeout':
      return '**timeout**';
    case 'unfinished':
      return '**unfinished**';
    case 'skipped':
      return 'skipped';
    default:
      return '**failed**';
  }
}

/** Table cells: one line, pipes escaped, long text cut. */
function cell(text: string): string {
  const flat = text.replace(/\s+/g, ' ').replace(/\|/g, '\\|').trim();
  return flat.length > 200 ? `${flat.slice(0, 199)}…` : flat;
}
