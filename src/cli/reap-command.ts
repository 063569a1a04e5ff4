import type { Command } from 'commander';
import { printableLine } from '../core/printable.js';
import { EXIT, exitCodeFor } from '../core/asp-error.js';
import { reap } from '../reaper/reap.js';
import type { ReapItem, ReapReport } from '../reaper/reap-report.js';
import { tally } from '../reaper/reap-report.js';
import { systemClock } from '../core/clock.js';
import { parseAgeOption } from './age-option.js';
import { LazyKubernetesBackend } from '../k8s/lazy-backend.js';
import { makeContext, reportFailure } from './cli-context.js';

interface ReapFlags {
  backend?: string;
  namespace?: string;
  dryRun?: boolean;
  olderThan?: string;
  all?: boolean;
  json?: boolean;
  debug?: boolean;
}

export function registerReapCommand(program: Command): void {
  program
    .command('reap')
    .description("remove the containers, volumes and host clones of dead runs (asp-labelled only, never a live run's)")
    .option('--dry-run', 'list what would be removed and remove nothing')
    .option('--backend <name>', 'docker or k8s: where to look for sandboxes (default: ASP_BACKEND, else docker)')
    .option('--namespace <name>', 'the Kubernetes namespace to reap (default: ASP_K8S_NAMESPACE, else the context’s)')
    .option('--older-than <age>', 'only what was created at least this long ago (90m, 36h, 7d)')
    .option('--all', 'also what was kept with --keep (still only of runs whose supervisor is gone)')
    .option('--json', 'print the report as one JSON object on stdout')
    .option('--debug', 'stack traces on errors')
    .action(async (flags: ReapFlags) => {
      process.exitCode = await reapCommand(flags);
    });
}

async function reapCommand(flags: ReapFlags): Promise<number> {
  const json = Boolean(flags.json);
  const debug = Boolean(flags.debug);
  try {
    const olderThanMs = flags.olderThan !== undefined ? parseAgeOption('--older-than', flags.olderThan) : undefined;
    const context = makeContext({ json, debug, backend: flags.backend, namespace: flags.namespace });
    const report = await reap(
      { backend: context.backend, workspacesRoot: context.settings.workspacesRoot, clock: systemClock },
      { dryRun: Boolean(flags.dryRun), all: Boolean(flags.all), olderThanMs, runtimes: true },
    );
    // asp's NetworkPolicy goes only with --all and only when no pod of asp is left in the namespace to need it.
    if (context.backend instanceof LazyKubernetesBackend && flags.all && report.docker.ok) {
      const policy = await (await context.backend.load()).removePolicyWhenUnused({ dryRun: Boolean(flags.dryRun) });
      if (policy) report.policies = [policy];
    }
    const failed = report.items.some((item) => item.outcome === 'failed');
    const exitCode = !report.docker.ok ? exitCodeFor(report.docker.code ?? 'DOCKER_UNAVAILABLE') : failed ? EXIT.infrastructure : EXIT.ok;
    if (json) context.stdout(JSON.stringify({ ...report, exitCode }) + '\n');
    else context.stdout(describeReap(report));
    if (!report.docker.ok)
      process.stderr.write(`asp: error: ${printableLine(report.docker.error ?? 'Docker failed')}${report.docker.hint ? ` — ${report.docker.hint}` : ''} (host dirs were still reaped)\n`);
    else if (failed) process.stderr.write('asp: error: some objects could not be removed (see above) — check the Docker daemon and rerun asp reap\n');
    return exitCode;
  } catch (error) {
    return reportFailure(error, { json, debug });
  }
}

const VERB: Record<ReapItem['outcome'], string> = { removed: 'removed', 'would-remove': 'would remove', 'in-use': 'in use, left', failed: 'FAILED' };
const REASON: Record<ReapItem['reason'], string> = { 'supervisor-gone': 'supervisor gone', expired: 'past expires-at' };

/** The report for people: one line per object taken, then the counts and what was left alone (and why). */
export function describeReap(report: ReapReport): string {
  const lines = report.items.map((item) => {
    const what = item.kind === 'workspace' ? `workspace ${item.name}${item.detail ? ` (${item.detail})` : ''}` : `${item.kind} ${item.name}`;
    return `${VERB[item.outcome]} ${what}: task ${item.taskId}, ${REASON[item.reason]}${item.error ? `: ${item.error}` : ''}`;
  });
  const [containers, pods, volumes, workspaces] = (['container', 'pod', 'volume', 'workspace'] as const).map((kind) => tally(report.items, kind));
  const counts = pods ? `${pods} pods and ${workspaces} workspace dirs` : `${containers} containers, ${volumes} volumes and ${workspaces} workspace dirs`;
  const done = report.items.length ? `${report.dryRun ? 'would reap' : 'reaped'} ${counts}` : 'nothing to reap';
  const { skipped } = report;
  const left = [
    skipped['supervisor-alive'] ? `${skipped['supervisor-alive']} ${plural(skipped['supervisor-alive'], 'object of a live run', 'objects of live runs')}` : '',
    skipped.kept ? `${skipped.kept} ${plural(skipped.kept, 'object', 'objects')} kept with --keep (asp reap --all takes them)` : '',
    skipped['awaiting-decision'] ? `${skipped['awaiting-decision']} ${plural(skipped['awaiting-decision'], 'clone', 'clones')} awaiting asp approve` : '',
    skipped['too-recent'] ? `${skipped['too-recent']} ${plural(skipped['too-recent'], 'object', 'objects')} newer than --older-than` : '',
    skipped['not-expired'] ? `${skipped['not-expired']} ${plural(skipped['not-expired'], 'object of another host', 'objects of other hosts')}, not yet expired` : '',
    skipped['not-asp'] ? `${skipped['not-asp']} ${plural(skipped['not-asp'], 'object', 'objects')} with damaged labels` : '',
  ].filter(Boolean);
  for (const policy of report.policies ?? []) lines.push(`${report.dryRun ? 'would remove' : 'removed'} NetworkPolicy ${policy}: no pod of asp is left`);
  for (const runtime of report.runtimes) lines.push(`${report.dryRun ? 'would remove' : 'removed'} runtime volume ${runtime}: asp's image changed`);
  lines.push(`asp reap: ${done}${left.length ? `; left alone: ${left.join(', ')}` : ''}`);
  return lines.join('\n') + '\n';
}

function plural(count: number, one: string, many: string): string {
  return count === 1 ? one : many;
}
