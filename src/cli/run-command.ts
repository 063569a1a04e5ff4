import type { Command } from 'commander';
import { AspError, EXIT } from '../asp-error.js';
import { parseStepFlag } from '../config/pipeline.js';
import { parseTaskSpec, type TaskSpecInput } from '../config/task-spec.js';
import { formatDuration } from '../config/units.js';
import { systemClock } from '../supervisor/clock.js';
import { runTask, type TaskResult } from '../supervisor/run-task.js';
import { makeContext, reportFailure } from './cli-context.js';
import { installInterruptHandlers } from './interrupts.js';

interface RunFlags {
  repo: string;
  task?: string;
  ref?: string;
  id?: string;
  step: string[];
  pipeline?: string;
  image?: string;
  runtime?: string;
  timeout?: string;
  memory?: string;
  cpus?: string;
  pids?: string;
  env: string[];
  outputCap?: string;
  keep?: boolean;
  json?: boolean;
  debug?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('run one task in a fresh, locked-down container and trace it')
    .requiredOption('--repo <url|path>', 'git URL or local path of the repository')
    .option('--task <text>', 'the instruction, given to steps as ASP_TASK', '')
    .option('--ref <ref>', 'branch, tag or commit to check out (default: the remote HEAD)')
    .option('--id <id>', 'task id (default: task-<date>-<time>-<slug of --task>)')
    .option('--step <name=command>', 'a step to run (repeatable, in order)', collect, [])
    .option('--pipeline <file>', 'a pipeline JSON file ({"steps":[{"name","run","timeout"}]})')
    .option('--image <image>', 'run in this image instead of the asp sandbox image')
    .option('--runtime <name>', 'container runtime, e.g. runsc (gVisor) where installed')
    .option('--timeout <duration>', 'deadline for the whole task', '30m')
    .option('--memory <size>', 'memory limit (no swap)', '2g')
    .option('--cpus <n>', 'CPU limit', '1')
    .option('--pids <n>', 'process limit', '512')
    .option('--env <NAME>', 'let this host variable into the sandbox (repeatable)', collect, [])
    .option('--output-cap <size>', 'output kept per step', '10m')
    .option('--keep', 'keep the container, volume and host clone for debugging')
    .option('--json', 'print one JSON result on stdout; logs go to stderr')
    .option('--debug', 'verbose logs and stack traces')
    .action(async (flags: RunFlags) => {
      process.exitCode = await runCommand(flags);
    });
}

async function runCommand(flags: RunFlags): Promise<number> {
  const json = Boolean(flags.json);
  const debug = Boolean(flags.debug);
  try {
    const spec = parseTaskSpec(specFromFlags(flags), 'asp run');
    const context = makeContext({ json, debug });
    const interrupts = installInterruptHandlers(context.log);
    try {
      const result = await runTask(spec, {
        docker: context.docker,
        settings: context.settings,
        clock: systemClock,
        log: context.log,
        cwd: process.cwd(),
        // Step output goes to the terminal; with --json stdout is the result's alone, so it goes to stderr.
        writeOutput: json ? (text) => process.stderr.write(text) : (text) => process.stdout.write(text),
        signal: interrupts.signal,
        forceSignal: interrupts.forceSignal,
      });
      if (json) context.stdout(JSON.stringify(result) + '\n');
      else process.stderr.write(summary(result));
      return result.exitCode;
    } finally {
      interrupts.dispose();
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
  if (flags.step.length && flags.pipeline) throw new AspError('BAD_INPUT', '--step and --pipeline both given', 'use one of them');
  return {
    repo: flags.repo,
    task: flags.task ?? '',
    ...(flags.ref ? { ref: flags.ref } : {}),
    ...(flags.id !== undefined ? { id: flags.id } : {}),
    ...(flags.step.length ? { steps: flags.step.map(parseStepFlag) } : {}),
    ...(flags.pipeline ? { pipeline: flags.pipeline } : {}),
    ...(flags.image ? { image: flags.image } : {}),
    ...(flags.runtime ? { runtime: flags.runtime } : {}),
    limits: limits as TaskSpecInput['limits'],
    env: flags.env,
    keep: Boolean(flags.keep),
    ...(flags.outputCap !== undefined ? { outputCap: flags.outputCap } : {}),
  };
}

function numberFlag(flag: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new AspError('BAD_INPUT', `${flag} "${text}" is not ${integer ? 'a whole number' : 'a number'}`, `pass e.g. ${flag} ${integer ? '512' : '1.5'}`);
  }
  return value;
}

/** Spec field paths read better as the flags the user typed. */
function renameFlags(error: unknown): unknown {
  if (!(error instanceof AspError) || error.code !== 'BAD_INPUT') return error;
  const renamed = error.message
    .replace(/^asp run: limits\.(timeout|memory|cpus|pids)\b/, 'asp run: --$1')
    .replace(/^asp run: steps\.(\d+)\.(\w+)/, (_match, index: string, field: string) => `asp run: --step #${Number(index) + 1} ${field}`)
    .replace(/^asp run: (id|repo|ref|env|outputCap)\b/, (_match, field: string) => `asp run: --${field === 'outputCap' ? 'output-cap' : field}`);
  return renamed === error.message ? error : new AspError(error.code, renamed, error.hint, { cause: error });
}

function summary(result: TaskResult): string {
  const lines = [`asp: task ${result.taskId} ${result.status} in ${formatDuration(result.durationMs)} (exit ${result.exitCode})`];
  for (const step of result.steps) {
    const timing = step.durationMs !== null ? ` in ${formatDuration(step.durationMs)}` : '';
    const code = step.exitCode !== null && step.exitCode !== 0 ? `, exit ${step.exitCode}` : '';
    lines.push(`  step ${step.name}: ${step.status}${timing}${code}`);
  }
  if (result.error && result.exitCode !== EXIT.ok) lines.push(`  reason: ${result.error}`);
  lines.push(`  artifacts: ${result.workspacePath}/.asp/ (${result.artifacts.join(', ') || 'none'})`);
  lines.push(`  trace: ${result.tracePath}`);
  if (result.kept) lines.push(`  kept: container, volume asp-ws-${result.taskId} and ${result.workspacePath}/repo (remove with asp reap --all)`);
  return lines.join('\n') + '\n';
}
