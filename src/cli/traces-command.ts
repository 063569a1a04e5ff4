import path from 'node:path';
import type { Command } from 'commander';
import { AspError, EXIT } from '../core/asp-error.js';
import { formatDuration, parseDuration } from '../config/units.js';
import type { TraceDelivery } from '../tracing/publish-trace.js';
import { pushTraces, type PushOutcome } from '../tracing/push-traces.js';
import type { TraceDocument } from '../tracing/trace-model.js';
import { markdownReport } from '../tracing/trace-report.js';
import { checkedTaskId, TraceStore, type ExportRecord } from '../tracing/trace-store.js';
import { formatUsd, summarizeTrace } from '../tracing/trace-summary.js';
import { formatTimeline } from '../tracing/trace-timeline.js';
import { makeContext, reportFailure, type CliContext } from './cli-context.js';
import { installInterruptHandlers } from './interrupts.js';

const EXPORT_FORMATS = ['json', 'md'] as const;
/** Per trace when pushing by hand: longer than a run's 5 s, since someone asked for it and is waiting for it. */
const PUSH_TIMEOUT_DEFAULT = '30s';

export function registerTracesCommand(program: Command): void {
  const traces = program.command('traces').description('read the stored traces and send them to Langfuse');
  traces
    .command('ls')
    .description('list the stored traces: task, status, duration, cost, exported?')
    .option('--json', 'print the list as JSON')
    .action((flags: { json?: boolean }) => act(flags, (context) => list(context)));
  traces
    .command('show <task>')
    .description("show a task's trace as a timeline")
    .action((task: string) => act({}, (context) => show(context, task)));
  traces
    .command('export <task>')
    .description("print a task's trace: the asp.trace/v1 JSON, or a markdown report")
    .option('--format <format>', `${EXPORT_FORMATS.join(' | ')}`, 'json')
    .action((task: string, flags: { format: string }) => act({}, (context) => exportTrace(context, task, flags.format)));
  traces
    .command('push [task]')
    .description('send the outbox (or one task) to Langfuse; an entry leaves the outbox only once Langfuse took it')
    .option('--all', 'every trace in the outbox (the default without a task)')
    .option('--timeout <duration>', 'give up on one trace after this long', PUSH_TIMEOUT_DEFAULT)
    .option('--json', 'print the outcome as JSON')
    .action((task: string | undefined, flags: { all?: boolean; timeout: string; json?: boolean }) => act(flags, (context) => push(context, task, flags)));
}

async function act(flags: { json?: boolean }, command: (context: CliContext) => Promise<number>): Promise<void> {
  const json = Boolean(flags.json);
  try {
    process.exitCode = await command(makeContext({ json }));
  } catch (error) {
    process.exitCode = reportFailure(error, { json, debug: false });
  }
}

async function deliveryOf(store: TraceStore, traceId: string, queued?: Set<string>): Promise<{ delivery: TraceDelivery; record?: ExportRecord }> {
  const record = await store.exportRecord(traceId);
  if (record) return { delivery: 'exported', record };
  return { delivery: (queued ?? (await store.queuedIds())).has(traceId) ? 'queued' : 'local' };
}

async function list(context: CliContext): Promise<number> {
  const store = new TraceStore(context.settings.home);
  // One after the other: when both dirs are unreadable, the error names the traces dir every time, not whichever lost a race.
  const entries = await store.list();
  const queued = await store.queuedIds();
  const traces = await Promise.all(
    entries
      .flatMap((entry) => (entry.document ? [entry.document] : []))
      .map(async (document) => {
        const summary = summarizeTrace(document);
        const { delivery } = await deliveryOf(store, summary.traceId, queued);
        return { task: summary.taskId, status: summary.status, startedAt: summary.startedAt, durationMs: summary.durationMs, costUsd: summary.costUsd, exported: delivery, traceId: summary.traceId };
      }),
  );
  traces.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  // A damaged file is listed, never skipped in silence and never in the way of the others.
  const damaged = entries.flatMap((entry) => (entry.damaged !== undefined ? [{ file: path.basename(entry.file), status: 'damaged' as const, damaged: entry.damaged }] : []));
  const rows = [...traces, ...damaged];
  if (context.json) {
    context.stdout(JSON.stringify(rows) + '\n');
    return EXIT.ok;
  }
  if (rows.length === 0) {
    context.stdout(`no traces in ${store.tracesDir}\n`);
    return EXIT.ok;
  }
  const exported: Record<TraceDelivery, string> = { exported: 'yes', queued: 'queued', local: 'no' };
  const table = [['TASK', 'STATUS', 'STARTED', 'DURATION', 'COST', 'EXPORTED']];
  for (const row of rows) {
    if ('damaged' in row) table.push([row.file, 'damaged', '-', '-', '-', `- (${row.damaged.slice(0, 100)})`]);
    else table.push([row.task, row.status, row.startedAt.replace('T', ' ').slice(0, 19), formatDuration(row.durationMs), formatUsd(row.costUsd), exported[row.exported]]);
  }
  context.stdout(formatTable(table));
  return EXIT.ok;
}

async function show(context: CliContext, task: string): Promise<number> {
  const store = new TraceStore(context.settings.home);
  const document = await store.read(checkedTaskId(task));
  const { delivery, record } = await deliveryOf(store, document.trace.id);
  context.stdout(formatTimeline(document, delivery, record));
  return EXIT.ok;
}

async function exportTrace(context: CliContext, task: string, format: string): Promise<number> {
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
    throw new AspError('BAD_INPUT', `--format "${format}" is not a trace format`, `use ${EXPORT_FORMATS.join(' or ')}`);
  }
  const store = new TraceStore(context.settings.home);
  const document: TraceDocument = await store.read(checkedTaskId(task));
  if (format === 'json') context.stdout(JSON.stringify(document, null, 2) + '\n');
  else {
    const { delivery, record } = await deliveryOf(store, document.trace.id);
    context.stdout(markdownReport(document, delivery, record));
  }
  return EXIT.ok;
}

async function push(context: CliContext, task: string | undefined, flags: { all?: boolean; timeout: string; json?: boolean }): Promise<number> {
  if (task !== undefined && flags.all) throw new AspError('BAD_INPUT', 'traces push: a task and --all both given', 'name one task, or use --all for the whole outbox');
  if (task !== undefined) checkedTaskId(task);
  const budgetMs = parseDuration(flags.timeout);
  // A bare 0 parses (as 0 s), but a push that gives up before it starts is a mistake, not a choice.
  if (budgetMs === undefined || budgetMs <= 0) throw new AspError('BAD_INPUT', `--timeout "${flags.timeout}" is not a duration`, 'use e.g. 30s or 2m');
  const target = context.settings.langfuse;
  if (!target) throw new AspError('BAD_INPUT', 'traces push needs Langfuse keys', 'set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (and LANGFUSE_BASE_URL for a self-hosted Langfuse)');
  const store = new TraceStore(context.settings.home);
  const interrupts = installInterruptHandlers(context.log);
  let outcome: PushOutcome;
  try {
    outcome = await pushTraces(
      store,
      { ...target, environment: context.settings.trace.environment },
      {
        taskId: task,
        budgetMs,
        signal: interrupts.signal,
        onDelivered: (entry) => {
          if (!context.json) context.stdout(`sent ${entry.taskId} (${entry.spans} spans, ${entry.scores} scores${entry.truncatedSpans ? `, ${entry.truncatedSpans} cut to fit` : ''}): ${entry.url}\n`);
        },
      },
    );
  } finally {
    interrupts.dispose();
  }
  const exitCode = outcome.failed.length || outcome.skipped.length ? EXIT.infrastructure : EXIT.ok;
  if (context.json) {
    context.stdout(JSON.stringify({ ...outcome, exitCode }) + '\n');
    return exitCode;
  }
  for (const failed of outcome.failed) context.stdout(`failed ${failed.taskId} (trace ${failed.traceId}): ${failed.reason}\n`);
  for (const skipped of outcome.skipped) context.stdout(`not tried ${skipped.taskId} (trace ${skipped.traceId}): stays in the outbox\n`);
  for (const damaged of outcome.damaged) context.stdout(`damaged ${path.join(store.outboxDir, damaged.file)}: ${damaged.reason} (left in place)\n`);
  const total = outcome.delivered.length + outcome.failed.length + outcome.skipped.length;
  if (total === 0 && outcome.damaged.length === 0) context.stdout('the outbox is empty: nothing to push\n');
  else context.stdout(`${outcome.delivered.length} sent, ${outcome.failed.length + outcome.skipped.length} not sent, ${outcome.damaged.length} damaged\n`);
  return exitCode;
}

function formatTable(rows: string[][]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((value, column) => (column === row.length - 1 ? value : value.padEnd(widths[column] ?? 0))).join('  ')).join('\n') + '\n';
}
