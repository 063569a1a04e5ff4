import type { Command } from 'commander';
import { EXIT } from '../core/asp-error.js';
import { formatLine, formatMape, formatR2, loadProbeFit, PROBE_MAX_TRACES } from '../tracing/probe-estimate.js';
import { PROBE_MIN_SAMPLES, PROBE_TARGETS } from '../tracing/probe-model.js';
import { TraceStore } from '../tracing/trace-store.js';
import { makeContext, reportFailure, type CliContext } from './cli-context.js';

export function registerProbeCommand(program: Command): void {
  const probe = program.command('probe').description('the PROBE model: latency, tokens and cost estimated from the complexity given at planning');
  probe
    .command('report')
    .description(`print the model fitted over the trace store (newest ${PROBE_MAX_TRACES} traces) and its accuracy: R² and MAPE per target`)
    .option('--json', 'print the model as JSON')
    .action(async (flags: { json?: boolean }) => {
      const json = Boolean(flags.json);
      try {
        process.exitCode = await probeReport(makeContext({ json }));
      } catch (error) {
        process.exitCode = reportFailure(error, { json, debug: false });
      }
    });
}

/** Too few tasks yet is an answer, not an error: exit 0 with a line saying how many more are needed. */
export async function probeReport(context: Pick<CliContext, 'settings' | 'json' | 'stdout'>): Promise<number> {
  const store = new TraceStore(context.settings.home);
  const { fit, damaged } = await loadProbeFit(store);
  if (context.json) {
    const body = fit.status === 'ready' ? { status: 'ready', n: fit.model.n, fits: fit.model.fits } : { status: 'insufficient', n: fit.n, needed: fit.needed };
    context.stdout(JSON.stringify({ ...body, minimum: PROBE_MIN_SAMPLES, damaged }) + '\n');
    return EXIT.ok;
  }
  const skipped = damaged ? ` (${damaged} damaged file(s) left out)` : '';
  if (fit.status === 'insufficient') {
    context.stdout(`no PROBE model yet: ${fit.n} finished task(s) with a complexity in ${store.tracesDir}, ${fit.needed} more needed (at least ${PROBE_MIN_SAMPLES})${skipped}\n`);
    return EXIT.ok;
  }
  const rows = [['TARGET', 'MODEL', 'R²', 'MAPE']];
  for (const target of PROBE_TARGETS) {
    const line = fit.model.fits[target];
    rows.push([target, formatLine(line), formatR2(line.r2), formatMape(line.mape)]);
  }
  context.stdout(`PROBE model over ${fit.model.n} finished task(s) with a complexity in ${store.tracesDir}${skipped}\n`);
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  context.stdout(rows.map((row) => row.map((value, column) => (column === row.length - 1 ? value : value.padEnd(widths[column] ?? 0))).join('  ')).join('\n') + '\n');
  return EXIT.ok;
}
