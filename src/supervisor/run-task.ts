import { createWriteStream, type WriteStream } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AspError, errorMessage, EXIT, exitCodeFor } from '../asp-error.js';
import { resolveSteps, type ResolvedStep } from '../config/pipeline.js';
import type { Settings } from '../config/settings.js';
import { generateRunId, generateTaskId } from '../config/task-id.js';
import type { TaskSpec } from '../config/task-spec.js';
import { extractChecked, packForSandbox } from '../docker/archive.js';
import { currentSupervisor, ownershipLabels, type Ownership } from '../docker/labels.js';
import type { DockerPort } from '../docker/port.js';
import { SANDBOX_ARTIFACTS_DIR, SANDBOX_WORKSPACE, type ProtocolMessage, type SandboxTask } from '../protocol/messages.js';
import type { TaskStatus } from '../tracing/trace-model.js';
import { TraceRecorder } from '../tracing/trace-recorder.js';
import { claimWorkspace, removePath, writeOwnerFile, type HostWorkspace } from '../workspace/host-workspace.js';
import { cloneRepository, resolveRepoSource } from '../workspace/repository.js';
import type { Clock } from './clock.js';
import { containerSpec } from './container-spec.js';
import type { Log } from './log.js';
import { runSession, type SessionEnd } from './sandbox-session.js';
import { ensureSandboxImage } from './sandbox-image.js';
import { StepOutputPrinter } from './step-output.js';

/** Files in `.asp/` that the host writes itself; a step cannot overwrite them through the copy-out. */
export const HOST_ARTIFACTS = new Set(['trace.json', 'events.jsonl', 'task.json', 'result.json']);
/** Objects outlive their deadline by this much before the reaper may take them (time to copy out and clean up). */
const EXPIRY_GRACE_MS = 10 * 60_000;
/** Cap on events.jsonl: the protocol is untrusted input, and step output in it is already capped per step. */
const EVENTS_CAP_BYTES = 64 * 1024 * 1024;

export interface RunDeps {
  docker: DockerPort;
  settings: Settings;
  clock: Clock;
  log: Log;
  cwd: string;
  /** Where step output is printed (prefixed by step). */
  writeOutput: (text: string) => void;
  /** Aborting it (first Ctrl-C) interrupts the task: the container is stopped, `.asp/` copied out, all cleaned up. */
  signal?: AbortSignal | undefined;
  /** Aborting it (second Ctrl-C) skips the copy-out: only quick removal is left. */
  forceSignal?: AbortSignal | undefined;
}

export interface StepResult {
  name: string;
  status: 'passed' | 'failed' | 'timeout' | 'skipped' | 'interrupted';
  exitCode: number | null;
  durationMs: number | null;
}

export interface TaskResult {
  taskId: string;
  runId: string;
  traceId: string;
  status: TaskStatus;
  exitCode: number;
  durationMs: number;
  commit: string | null;
  image: string | null;
  steps: StepResult[];
  artifacts: string[];
  tracePath: string;
  workspacePath: string;
  kept: boolean;
  warnings: string[];
  error?: string;
}

/** Runs one task in one hardened container, end to end, and leaves nothing behind but `.asp/` (or all of it with keep). */
export async function runTask(spec: TaskSpec, deps: RunDeps): Promise<TaskResult> {
  const { docker, settings, clock, log } = deps;
  const startedAt = clock.now();
  const source = resolveRepoSource(spec.repo, deps.cwd);
  const runId = generateRunId(startedAt);
  const workspace = await claimWorkspace(settings.workspacesRoot, spec.id ?? generateTaskId(spec.task, startedAt), { unique: !spec.id });
  const taskId = workspace.taskId;
  const owner: Ownership = {
    taskId,
    runId,
    supervisor: currentSupervisor(),
    expiresAt: new Date(startedAt.getTime() + spec.limits.timeout + EXPIRY_GRACE_MS),
    keep: spec.keep,
  };
  const trace = new TraceRecorder(
    { taskId, runId, task: spec.task, repo: source.display, ref: spec.ref, workspacePath: workspace.dir, limits: limitsForTrace(spec) },
    clock,
  );
  const warnings: string[] = [];
  const warn = (message: string) => {
    if (warnings.length < 100) warnings.push(message);
    log.warn({ taskId }, message);
  };
  log.info({ taskId, runId, repo: source.display, workspace: workspace.dir }, `task ${taskId} starting`);
  await writeOwnerFile(workspace, owner, 'running', startedAt);

  const volume = `asp-ws-${taskId}`;
  let containerId: string | undefined;
  let volumeCreated = false;
  let started = false;
  let steps: ResolvedStep[] = [];
  let commit: string | null = null;
  let image: string | null = null;
  const stepEnds = new Map<string, { exitCode: number; durationMs: number; timedOut: boolean }>();
  const stepStarts = new Set<string>();
  let events: WriteStream | undefined;
  let outcome: { status: TaskStatus; exitCode: number; error?: string } = { status: 'error', exitCode: EXIT.infrastructure };
  let failure: unknown;

  try {
    // The clone and the container are independent until the volume is filled: make them side by side, but let
    // both settle before going on, so nothing runs on in the background after a failure.
    const labels = ownershipLabels(owner);
    const [cloned, created] = await settleBoth(
      trace.phase('clone', () => cloneRepository(source, workspace.repoDir, spec.ref, settings.hostEnv)),
      (async () => {
        const imageTag = await trace.phase('image', () =>
          ensureSandboxImage(docker, {
            image: spec.image,
            onBuildStart: (tag) => log.info({ image: tag }, `building the sandbox image ${tag} (first run, or asp changed); this takes a minute`),
            onProgress: (line) => log.debug({}, line),
          }),
        );
        image = imageTag;
        trace.setImage(imageTag);
        return trace.phase('container-create', async () => {
          await docker.createVolume(volume, labels);
          volumeCreated = true;
          containerId = await docker.createContainer(
            containerSpec({ name: `asp-${taskId}-${runId}`, image: imageTag, volume, labels, limits: spec.limits, allowedEnv: allowedEnv(spec, settings), runtime: spec.runtime }),
          );
          return containerId;
        });
      })(),
    );
    commit = cloned.commit;
    trace.setSource(cloned.commit, cloned.ref);
    steps = await resolveSteps(spec, workspace.repoDir, deps.cwd);

    const sandboxTask: SandboxTask = {
      taskId,
      task: spec.task,
      steps,
      deadlineAt: startedAt.getTime() + spec.limits.timeout,
      outputCapBytes: spec.outputCap,
    };
    await writeFile(path.join(workspace.artifactsDir, 'task.json'), JSON.stringify(sandboxTask, null, 2) + '\n');
    const id = created;
    await trace.phase('volume-fill', () => docker.putArchive(id, SANDBOX_WORKSPACE, packForSandbox(workspace.dir, ['repo', '.asp'])));

    events = createWriteStream(path.join(workspace.artifactsDir, 'events.jsonl'));
    let eventBytes = 0;
    const record = (entry: object) => {
      const line = JSON.stringify({ at: clock.now().toISOString(), ...entry }) + '\n';
      eventBytes += line.length;
      if (eventBytes <= EVENTS_CAP_BYTES) events?.write(line);
    };
    const printer = new StepOutputPrinter(deps.writeOutput, spec.outputCap);
    const onMessage = (message: ProtocolMessage) => {
      record(message);
      trace.onMessage(message);
      if (message.type === 'step.start') {
        stepStarts.add(message.step);
        log.info({ taskId, step: message.step }, `step ${message.step}: ${message.run}`);
      } else if (message.type === 'step.log') printer.data(message.step, message.stream, message.data);
      else if (message.type === 'step.end') {
        printer.flushStep(message.step);
        stepEnds.set(message.step, { exitCode: message.exitCode, durationMs: message.durationMs, timedOut: message.timedOut ?? false });
        log.info({ taskId, step: message.step, exitCode: message.exitCode, durationMs: message.durationMs }, `step ${message.step} ended with exit code ${message.exitCode}`);
      } else if (message.type === 'warning') warn(`sandbox: ${message.message}`);
    };

    started = true;
    const end = await runSession(
      docker,
      id,
      { steps, taskTimeoutMs: spec.limits.timeout, deadlineAt: sandboxTask.deadlineAt, signal: deps.signal },
      {
        onMessage,
        onWarning: (message) => {
          record({ type: 'host.warning', message });
          warn(message);
        },
        onRunnerStderr: (line) => {
          record({ type: 'runner.stderr', data: line.slice(0, 4096) });
          log.debug({ taskId }, `sandbox stderr: ${line.slice(0, 4096)}`);
        },
      },
    );
    outcome = outcomeOf(end);
    if (outcome.status === 'timeout' || outcome.status === 'interrupted') trace.abandonOpenSteps(outcome.error ?? outcome.status, outcome.exitCode);
    if (end.kind === 'exited' && !end.taskEnd) warn(`the sandbox ended without reporting (exit ${end.statusCode}${end.statusCode === 137 ? ': killed, out of memory?' : ''})`);

    if (!deps.forceSignal?.aborted) {
      const extracted = await trace.phase('copy-out', async () =>
        extractChecked(await docker.getArchive(id, SANDBOX_ARTIFACTS_DIR), workspace.artifactsDir, { root: '.asp', reserved: HOST_ARTIFACTS }),
      );
      // task.json is asp's own input, put there by the host: skipping it is expected, not worth a warning.
      for (const rejected of extracted.rejected.filter((entry) => entry.name !== '.asp/task.json')) warn(`not copied out of the sandbox: .asp/${rejected.name.replace(/^\.asp\/?/, '')} (${rejected.reason})`);
    }
  } catch (error) {
    failure = error;
    outcome = { status: 'error', exitCode: error instanceof AspError ? exitCodeFor(error.code) : EXIT.infrastructure, error: errorMessage(error) };
  } finally {
    await new Promise<void>((resolve) => (events ? events.end(resolve) : resolve()));
    await trace.phase('cleanup', () => cleanup(docker, { containerId, volume: volumeCreated ? volume : undefined, workspace, keep: spec.keep, started })).catch((error: unknown) => {
      warn(`cleanup incomplete: ${errorMessage(error)} (asp reap will finish it)`);
    });
  }

  const finishedAt = clock.now();
  const durationMs = finishedAt.getTime() - startedAt.getTime();
  const tracePath = path.join(workspace.artifactsDir, 'trace.json');
  if (!started) {
    // Nothing ran: leave nothing half-made behind, not even the host dir.
    await removePath(workspace.dir);
    throw failure;
  }
  const document = trace.finish({ ...outcome, durationMs });
  await writeFile(tracePath, JSON.stringify(document, null, 2) + '\n');
  await writeOwnerFile(workspace, owner, outcome.status, startedAt, finishedAt);
  const result: TaskResult = {
    taskId,
    runId,
    traceId: trace.traceId,
    status: outcome.status,
    exitCode: outcome.exitCode,
    durationMs,
    commit,
    image,
    steps: stepResults(steps, stepStarts, stepEnds, outcome.status),
    artifacts: await listArtifacts(workspace),
    tracePath,
    workspacePath: workspace.dir,
    kept: spec.keep,
    warnings,
    ...(outcome.error ? { error: outcome.error } : {}),
  };
  await writeFile(path.join(workspace.artifactsDir, 'result.json'), JSON.stringify(result, null, 2) + '\n');
  if (failure) throw failure;
  return result;
}

async function settleBoth<A, B>(first: Promise<A>, second: Promise<B>): Promise<[A, B]> {
  const [a, b] = await Promise.allSettled([first, second]);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
  return [a.value, b.value];
}

function outcomeOf(end: SessionEnd): { status: TaskStatus; exitCode: number; error?: string } {
  switch (end.kind) {
    case 'deadline':
      return { status: 'timeout', exitCode: EXIT.deadline, error: end.what };
    case 'interrupted':
      return { status: 'interrupted', exitCode: EXIT.interrupted, error: 'interrupted' };
    case 'exited':
      if (end.taskEnd?.status === 'passed' && end.statusCode === 0) return { status: 'passed', exitCode: EXIT.ok };
      if (end.taskEnd?.status === 'timeout' || end.statusCode === EXIT.deadline) return { status: 'timeout', exitCode: EXIT.deadline, error: 'a step passed its deadline' };
      return { status: 'failed', exitCode: EXIT.taskFailed, ...(end.taskEnd ? {} : { error: `the sandbox exited with ${end.statusCode}` }) };
  }
}

async function cleanup(
  docker: DockerPort,
  target: { containerId: string | undefined; volume: string | undefined; workspace: HostWorkspace; keep: boolean; started: boolean },
): Promise<void> {
  if (target.keep && target.started) return;
  // Container first: a volume in use cannot be removed.
  if (target.containerId) await docker.removeContainer(target.containerId);
  if (target.volume) await docker.removeVolume(target.volume);
  await removePath(target.workspace.repoDir);
}

function stepResults(
  steps: ResolvedStep[],
  starts: Set<string>,
  ends: Map<string, { exitCode: number; durationMs: number; timedOut: boolean }>,
  status: TaskStatus,
): StepResult[] {
  return steps.map((step) => {
    const end = ends.get(step.name);
    if (end) {
      const stepStatus = end.timedOut ? 'timeout' : end.exitCode === 0 ? 'passed' : 'failed';
      return { name: step.name, status: stepStatus, exitCode: end.exitCode, durationMs: end.durationMs };
    }
    if (starts.has(step.name)) {
      // Started, never ended: the container was stopped under it.
      return { name: step.name, status: status === 'interrupted' ? 'interrupted' : 'timeout', exitCode: status === 'interrupted' ? EXIT.interrupted : EXIT.deadline, durationMs: null };
    }
    return { name: step.name, status: 'skipped', exitCode: null, durationMs: null };
  });
}

async function listArtifacts(workspace: HostWorkspace): Promise<string[]> {
  const entries = await readdir(workspace.artifactsDir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(workspace.artifactsDir, path.join(entry.parentPath, entry.name)))
    .sort();
}

function allowedEnv(spec: TaskSpec, settings: Settings): Record<string, string> {
  const allowed: Record<string, string> = {};
  for (const name of spec.env) {
    const value = settings.hostEnv[name];
    if (value !== undefined) allowed[name] = value;
  }
  return allowed;
}

function limitsForTrace(spec: TaskSpec): Record<string, number> {
  const { timeout, memory, cpus, pids, tmpfs } = spec.limits;
  return { timeout_ms: timeout, memory_bytes: memory, cpus, pids, tmpfs_bytes: tmpfs };
}
