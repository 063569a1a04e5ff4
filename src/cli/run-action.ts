/** `asp run` itself, loaded when a run starts (run-command.ts declares its flags). */
import { AspError, EXIT } from '../core/asp-error.js';
import { parseStepFlag } from '../config/pipeline.js';
import { readInputFile } from '../config/input-file.js';
import { traceName } from '../config/settings.js';
import { MAX_TASK_BYTES, parseTaskSpec, type TaskSpecInput } from '../config/task-spec.js';
import { formatBytes, formatDuration } from '../config/units.js';
import { printable, printableLine } from '../core/printable.js';
import { systemClock } from '../core/clock.js';
import { redact } from '../forge/forge.js';
import { resolveRepoSource } from '../workspace/repository.js';
import { runTask, type TaskResult } from '../supervisor/run-task.js';
import { poolSource } from '../pool/warm-source.js';
import { resolveTraceMode } from '../tracing/trace-mode.js';
import { makeContext, reportFailure } from './cli-context.js';
import { installInterruptHandlers } from './interrupts.js';
import { numberFlag } from './number-flags.js';
import { terminalAsk } from './terminal-ask.js';

import type { RunFlags } from './run-command.js';

/** How long an interrupted run waits for a sweep of others' leftovers before it exits (its own clean-up is done). */
const SWEEP_AFTER_INTERRUPT_MS = 1000;

export async function runCommand(flags: RunFlags): Promise<number> {
  const json = Boolean(flags.json);
  const debug = Boolean(flags.debug);
  try {
    const spec = parseTaskSpec({ ...specFromFlags(flags), task: await taskText(flags) }, 'asp run');
    const [session, user] = [traceName('--session', flags.session), traceName('--user', flags.user)];
    const context = makeContext({ json, debug, backend: flags.backend, namespace: flags.namespace });
    if (flags.dryRun) {
      const { dryRunManifests, formatManifests } = await import('./dry-run.js');
      context.stdout(await formatManifests(await dryRunManifests(spec, context), json));
      return EXIT.ok;
    }
    if (spec.pr && !context.settings.github.token) throw new AspError('BAD_INPUT', '--pr needs a GitHub token', 'set GITHUB_TOKEN (or GH_TOKEN) on the host; it never enters the sandbox');
    // Checked before anything runs: a remote that is not there is bad input, not a failed push after the work.
    const pushTo =
      flags.pushTo === undefined
        ? undefined
        : await (await import('../delivery/push-target.js')).explicitPushTarget(flags.pushTo, resolveRepoSource(spec.repo, process.cwd()).location, process.cwd(), context.settings.hostEnv);
    const traceMode = resolveTraceMode(flags.trace, context.settings);
    // Docker's first answers (its version and info, asked once per process) are on their way while the task is
    // resolved and its workspace claimed; a failure here is the task's to report, when it asks again.
    if (context.backend.name === 'docker') void context.backend.describe().catch(() => {});
    const interrupts = installInterruptHandlers(context.log);
    // Clear up after dead runs while this run's sandbox starts (the host only waits then; RunDeps.onIdle), with the
    // delivery's modules loaded on the side: the sweep never throws and never touches a live run.
    let sweeping: Promise<unknown> | undefined;
    let delivery: Promise<typeof import('../delivery/deliver-task.js')> | undefined;
    const onIdle = () => {
      delivery ??= import('../delivery/deliver-task.js');
      sweeping ??= import('../reaper/sweep.js').then(({ sweep }) => sweep({ backend: context.backend, settings: context.settings, clock: systemClock, log: context.log }));
    };
    try {
      const run = await runTask(spec, {
        backend: context.backend,
        backendFor: context.backendFor,
        settings: context.settings,
        clock: systemClock,
        log: context.log,
        cwd: process.cwd(),
        // Step output goes to the terminal; with --json stdout is the result's alone, so it goes to stderr.
        writeOutput: json ? (text) => process.stderr.write(text) : (text) => process.stdout.write(text),
        signal: interrupts.signal,
        forceSignal: interrupts.forceSignal,
        traceMode,
        session,
        user,
        warm: poolSource(context.settings.home, context.backend),
        onIdle,
      });
      onIdle();
      const { deliverTask } = await (delivery ?? import('../delivery/deliver-task.js'));
      const result = await deliverTask(run, {
        settings: context.settings,
        log: context.log,
        decision: flags.approve ? 'approve' : flags.deny ? 'deny' : undefined,
        // Ask at the gate only when a person is there to answer.
        ask: terminalAsk(),
        signal: interrupts.signal,
        pushTo,
      });
      if (json) context.stdout(JSON.stringify(result) + '\n');
      // Step names, the reason and the branch came from the sandbox or the repository: printed escaped.
      else process.stderr.write(printable(summary(result)));
      return result.exitCode;
    } finally {
      interrupts.dispose();
      if (!interrupts.signal.aborted) {
        onIdle();
        await sweeping;
      } else if (sweeping) {
        // An interrupted run ends once its own clean-up is done: a sweep of dead runs' leftovers still under way (a
        // pod that takes its time to go) is left to the next run or asp reap, past a second for its output to drain.
        setTimeout(() => process.exit(), SWEEP_AFTER_INTERRUPT_MS).unref();
      }
    }
  } catch (error) {
    return reportFailure(renameFlags(error), { json, debug });
  }
}

function specFromFlags(flags: RunFlags): TaskSpecInput {
  const limits: Record<string, unknown> = {};
  if (flags.timeout !== undefined) limits.timeout = flags.timeout;
  if (flags.memory !== undefined) limits.memory = flags.memory;
  if (flags.cpus !== undefined) limits.cpus = numberFlag('--cpus', flags.cpus, false);
  if (flags.pids !== undefined) limits.pids = numberFlag('--pids', flags.pids, true);
  if (flags.disk !== undefined) limits.disk = flags.disk;
  if (flags.step.length && flags.pipeline) throw new AspError('BAD_INPUT', '--step and --pipeline both given', 'use one of them');
  if (flags.approve && flags.deny) throw new AspError('BAD_INPUT', '--approve and --deny both given', 'use one of them');
  if (flags.draft && !flags.pr) throw new AspError('BAD_INPUT', '--draft without --pr', 'add --pr, or leave out --draft');
  if (flags.pushTo !== undefined && !flags.push && !flags.pr) throw new AspError('BAD_INPUT', '--push-to without --push', 'add --push (or --pr), or leave out --push-to');
  return {
    repo: flags.repo,
    task: flags.task ?? '',
    ...(flags.ref ? { ref: flags.ref } : {}),
    ...(flags.id !== undefined ? { id: flags.id } : {}),
    ...(flags.step.length ? { steps: flags.step.map((flag) => parseStepFlag(flag)) } : {}),
    ...(flags.check.length ? { check: flags.check.map((flag) => parseStepFlag(flag, '--check')) } : {}),
    ...(flags.checkDir !== undefined ? { checkDir: flags.checkDir } : {}),
    ...(flags.pipeline ? { pipeline: flags.pipeline } : {}),
    ...(flags.image ? { image: flags.image } : {}),
    ...(flags.branch ? { branch: flags.branch } : {}),
    ...(flags.depth !== undefined || flags.filter !== undefined
      ? { clone: { ...(flags.depth !== undefined ? { depth: numberFlag('--depth', flags.depth, true) } : {}), ...(flags.filter !== undefined ? { filter: cloneFilter(flags.filter) } : {}) } }
      : {}),
    ...(flags.runtime ? { runtime: flags.runtime } : {}),
    limits: limits as TaskSpecInput['limits'],
    env: flags.env,
    keep: Boolean(flags.keep),
    hitl: Boolean(flags.hitl),
    push: Boolean(flags.push),
    pr: Boolean(flags.pr),
    draft: Boolean(flags.draft),
    ...(flags.outputCap !== undefined ? { outputCap: flags.outputCap } : {}),
    ...networkFromFlags(flags),
    ...(flags.maxCost !== undefined || flags.maxTokens !== undefined
      ? {
          budget: {
            ...(flags.maxCost !== undefined ? { maxCostUsd: numberFlag('--max-cost', flags.maxCost, false) } : {}),
            ...(flags.maxTokens !== undefined ? { maxTokens: numberFlag('--max-tokens', flags.maxTokens, true) } : {}),
          },
        }
      : {}),
  };
}

/** `--allow-host` and the caps on it; a cap without a host to allow would do nothing, and says so. */
function networkFromFlags(flags: RunFlags): Pick<TaskSpecInput, 'network'> {
  const caps = { '--egress-bytes': flags.egressBytes, '--egress-connections': flags.egressConnections, '--egress-timeout': flags.egressTimeout };
  if (!flags.allowHost.length) {
    const given = Object.entries(caps).find(([, value]) => value !== undefined);
    if (given) throw new AspError('BAD_INPUT', `${given[0]} without --allow-host`, 'a cap on egress needs hosts to allow: add --allow-host NAME[:PORT], or leave the cap out');
    return {};
  }
  return {
    network: {
      allow: flags.allowHost,
      ...(flags.egressBytes !== undefined ? { maxBytes: flags.egressBytes } : {}),
      ...(flags.egressConnections !== undefined ? { maxConnections: numberFlag('--egress-connections', flags.egressConnections, true) } : {}),
      ...(flags.egressTimeout !== undefined ? { connectionTimeout: flags.egressTimeout } : {}),
    },
  };
}

/** The task text: --task, or the file --task-file names (read whole, bounded), never both. */
async function taskText(flags: RunFlags): Promise<string> {
  if (flags.taskFile === undefined) return flags.task ?? '';
  if (flags.task !== undefined) throw new AspError('BAD_INPUT', '--task and --task-file both given', 'use one of them');
  // One byte over the limit is enough for the spec to say the task is too long.
  return readInputFile(flags.taskFile, MAX_TASK_BYTES + 4, 'task file', 'pass --task-file a readable text file of at most 1 MiB');
}

/** Spec field paths read better as the flags the user typed. */
function renameFlags(error: unknown): unknown {
  if (!(error instanceof AspError) || error.code !== 'BAD_INPUT') return error;
  const renamed = error.message
    .replace(/^asp run: limits\.(timeout|memory|cpus|pids|disk)\b/, 'asp run: --$1')
    .replace(/^asp run: steps\.(\d+)\.(\w+)/, (_match, index: string, field: string) => `asp run: --step #${Number(index) + 1} ${field}`)
    .replace(/^asp run: check\.(\d+)\.(\w+)/, (_match, index: string, field: string) => `asp run: --check #${Number(index) + 1} ${field}`)
    .replace(/^asp run: checkDir\b/, 'asp run: --check-dir')
    .replace(/^asp run: task\b/, 'asp run: --task')
    .replace(/^asp run: clone\.(depth|filter)\b/, 'asp run: --$1')
    .replace(/^asp run: budget\.maxCostUsd\b/, 'asp run: --max-cost')
    .replace(/^asp run: budget\.maxTokens\b/, 'asp run: --max-tokens')
    .replace(/^asp run: network\.allow\.(\d+)/, (_match, index: string) => `asp run: --allow-host #${Number(index) + 1}`)
    .replace(/^asp run: network\.allow\b/, 'asp run: --allow-host')
    .replace(/^asp run: network\.maxBytes\b/, 'asp run: --egress-bytes')
    .replace(/^asp run: network\.maxConnections\b/, 'asp run: --egress-connections')
    .replace(/^asp run: network\.connectionTimeout\b/, 'asp run: --egress-timeout')
    .replace(/^asp run: (id|repo|ref|env|outputCap|branch)\b/, (_match, field: string) => `asp run: --${field === 'outputCap' ? 'output-cap' : field}`);
  return renamed === error.message ? error : new AspError(error.code, renamed, error.hint, { cause: error });
}

function summary(result: TaskResult): string {
  const lines = [`asp: task ${result.taskId} ${result.status} in ${formatDuration(result.durationMs)} (exit ${result.exitCode})`];
  const stepLine = (label: string, step: TaskResult['steps'][number]) => {
    const timing = step.durationMs !== null ? ` in ${formatDuration(step.durationMs)}` : '';
    const code = step.exitCode !== null && step.exitCode !== 0 ? `, exit ${step.exitCode}` : '';
    return `${label} ${step.name}: ${step.status}${timing}${code}`;
  };
  for (const step of result.steps) lines.push(stepLine('  step', step));
  if (result.check) {
    lines.push(`  clean-room check on ${result.check.commit.slice(0, 12)}: ${result.check.status} (.asp/check/)`);
    for (const step of result.check.steps) lines.push(stepLine('    check', step));
  }
  if (result.error && result.exitCode !== EXIT.ok) lines.push(`  reason: ${printableLine(result.error)}`);
  if (result.models) lines.push(`  model: ${result.models.provider}:${result.models.model}, ${result.models.calls} call(s), ${result.models.tokens} tokens, $${result.models.costUsd.toFixed(4)}`);
  if (result.egress) {
    const egress = result.egress;
    lines.push(`  egress: ${egress.connections} connection(s), ${egress.refused} refused, ${formatBytes(egress.bytesIn)} in, ${formatBytes(egress.bytesOut)} out (.asp/events.jsonl)`);
  }
  if (result.delivery) {
    const delivery = result.delivery;
    if (delivery.prUrl) lines.push(`  pull request: ${delivery.prUrl}`);
    else if (delivery.pushedTo) lines.push(`  pushed: branch ${result.change?.branch} to ${redact(delivery.pushedTo)}`);
    if (delivery.hitlStatus === 'awaiting_approval' || delivery.hitlStatus === 'deferred') lines.push(`  awaiting approval: asp approve ${result.taskId} [--deny] [--comment TEXT]`);
    else if (delivery.hitlStatus !== 'not_required') lines.push(`  review: ${delivery.hitlStatus}${delivery.decidedBy ? ` by ${delivery.decidedBy}` : ''}`);
  }
  if (result.change) {
    const change = result.change;
    lines.push(`  changes: ${change.commits} commit(s) on ${change.branch}, ${change.filesChanged} file(s), +${change.insertions} -${change.deletions} (.asp/change.bundle, .asp/diff.patch)`);
  } else if (result.status === 'passed') lines.push('  changes: none');
  // File names came from the sandbox: one line each, a newline in a name cannot start a line of its own.
  lines.push(`  artifacts: ${result.workspacePath}/.asp/ (${result.artifacts.map(printableLine).join(', ') || 'none'})`);
  lines.push(`  trace: ${result.tracePath}${result.traceDelivery === 'exported' ? ' (sent to Langfuse)' : result.traceDelivery === 'queued' ? ' (in the outbox: asp traces push)' : ''}`);
  // The clone stays for asp approve (a decision or a failed push); the container and volume only with --keep.
  const pending = result.delivery !== null && (Boolean(result.delivery.error) || result.delivery.hitlStatus === 'awaiting_approval' || result.delivery.hitlStatus === 'deferred');
  if (pending) lines.push(`  kept: ${result.workspacePath}/repo, for asp approve ${result.taskId} [--branch B | --deny]`);
  else if (result.kept) lines.push(`  kept: container, volume asp-ws-${result.taskId}-${result.runId} and ${result.workspacePath}/repo (remove with asp reap --all)`);
  return lines.join('\n') + '\n';
}

/** `--filter`: one of the partial-clone filters asp supports (the task spec's schema says the same, for task files). */
function cloneFilter(filter: string): 'blob:none' | 'tree:0' {
  if (filter === 'blob:none' || filter === 'tree:0') return filter;
  throw new AspError('BAD_INPUT', `--filter ${filter} is not a partial-clone filter asp supports`, 'use --filter blob:none or --filter tree:0');
}
