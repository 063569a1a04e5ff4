import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { AspError, errorMessage, EXIT, exitCodeFor } from '../core/asp-error.js';
import { readPipelineEarly, resolvePipeline, type ResolvedStep } from '../config/pipeline.js';
import { githubToken, type Settings } from '../config/settings.js';
import { generateRunId, generateTaskId } from '../config/task-id.js';
import type { TaskSpec } from '../config/task-spec.js';
import { extractChecked, packForSandbox, type ExtractResult } from '../docker/archive.js';
import { currentSupervisor, ownershipLabels, type Ownership } from '../docker/labels.js';
import type { DockerPort } from '../docker/port.js';
import { SANDBOX_ARTIFACTS_DIR, type SandboxTask } from '../protocol/messages.js';
import { publishTrace, type TraceDelivery } from '../tracing/publish-trace.js';
import type { TaskStatus } from '../tracing/trace-model.js';
import type { TraceMode } from '../tracing/trace-mode.js';
import { TraceRecorder } from '../tracing/trace-recorder.js';
import { claimWorkspace, removePath, writeOwnerFile, type HostWorkspace } from '../workspace/host-workspace.js';
import { copyAllForUser, HOST_FILES, hostFilePath, plantedHostNames, taskTextEntry, taskTextFile, writeHostFile } from '../workspace/host-state.js';
import { writeResultFile } from '../workspace/result-file.js';
import { deliverAll } from '../delivery/deliver-changes.js';
import { deliveryContext } from '../delivery/delivery-context.js';
import { pending, saveDeliveries, type Decision, type DeliveryEntry, type DeliveryOutcome, type DeliveryPlan, type GateSummary } from '../delivery/delivery-plan.js';
import { SECRET_NAME } from '../protocol/secret-masker.js';
import { recordDelivery } from '../tracing/hitl-trace.js';
import { fetchChanges, type ChangeReport } from '../workspace/change-bundle.js';
import { cloneExtraRepos, fetchExtraChanges, resolveExtraRepos, type ExtraChange, type ExtraRepo } from '../workspace/extra-repos.js';
import { RepoMirrors } from '../workspace/repo-mirror.js';
import { cloneRepository, resolveRepoSource } from '../workspace/repository.js';
import type { Clock } from '../core/clock.js';
import { containerSpec } from './container-spec.js';
import { checkRuntime, createHardenedContainer, identityMismatch } from './hardened-container.js';
import { checkDirOf, runCheck, type CheckResult } from './check-phase.js';
import { outcomeOf, stepResults, whyStopped, type StepResult } from './session-outcome.js';
import type { Log } from '../core/log.js';
import { runSession } from './sandbox-session.js';
import { chooseModel, MODEL_KEY_VARIABLES, modelSecrets } from '../models/model-choice.js';
import { MODEL_ENDPOINT_PORT, modelUse, openTaskGateway, type GatewayOverrides, type ModelUse, type TaskGateway } from './task-gateway.js';
import { checkLimitsFit } from './limits-fit.js';
import { ensureSandboxImage } from './sandbox-image.js';
import { TaskEvents } from './task-events.js';
import { writeMissingStepRecords } from './step-records.js';
import { feedSandbox } from './workspace-feed.js';

/**
 * `.asp/` as it comes out of the sandbox, streamed or copied: into the host's `.asp/` and nowhere else. asp's own
 * files are in `.asp-host/` (host-state.ts), out of its reach whatever the names: no name needs refusing.
 */
const ARTIFACT_EXTRACT = { root: '.asp' };
/** asp's files that the user also finds in `.asp/` (copies, written after the copy-out, never read back). */
const USER_COPIES = ['task', 'events', 'trace', 'result'] as const;
/** Objects outlive their deadline by this much before the reaper may take them (time to copy out and clean up). */
const EXPIRY_GRACE_MS = 10 * 60_000;

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
  /** Where to clone a repository from instead of its origin (the batch's shared mirrors). */
  mirrors?: RepoMirrors | undefined;
  /** Let an explicit id take back the workspace of an earlier run of it that never finished (batch retries, --resume). */
  reclaimUnfinished?: boolean | undefined;
  /** Where the trace goes besides the local JSON (`--trace`); default: Langfuse when keys are set. */
  traceMode?: TraceMode | undefined;
  /** The HITL gate's answer given up front (--approve / --deny). */
  decision?: Decision | undefined;
  /** Asks a person at the gate (a TTY prompt); absent when nobody can be asked. */
  ask?: ((summary: GateSummary) => Promise<Decision>) | undefined;
  /** Test seams of the model gateway (a fetch, fast retries). */
  gateway?: GatewayOverrides | undefined;
}

export type { StepResult };

export interface TaskResult {
  taskId: string;
  runId: string;
  traceId: string;
  /** The pipeline's outcome, or awaiting_approval when it passed and the HITL gate waits for `asp approve`. */
  status: TaskStatus | 'awaiting_approval';
  exitCode: number;
  durationMs: number;
  commit: string | null;
  image: string | null;
  steps: StepResult[];
  artifacts: string[];
  /**
   * The clean-room check, when the task has one and its steps passed: what the fresh sandbox ran against, how each
   * check step ended; its outcome is the task's. null otherwise.
   */
  check: CheckResult | null;
  /** What the sandbox changed, fetched from its bundle into the host's clone; null when nothing changed. */
  change: ChangeReport | null;
  /** The HITL gate and push/PR, when asked for (--hitl, --push, --pr). */
  delivery: DeliveryOutcome | null;
  /** The other repositories of a multi-repo task, and what changed in each. */
  repos: ExtraChange[];
  tracePath: string;
  /** Whether Langfuse took the trace, it waits in the outbox, or it is local only. */
  traceDelivery?: TraceDelivery;
  workspacePath: string;
  kept: boolean;
  /** Model calls through the host's gateway, when a model was configured. */
  models?: ModelUse;
  warnings: string[];
  error?: string;
}

/** Runs one task in one hardened container, end to end, and leaves nothing behind but `.asp/` (or all of it with keep). */
export async function runTask(spec: TaskSpec, deps: RunDeps): Promise<TaskResult> {
  spec = await readPipelineEarly(spec, deps.cwd);
  const checkDir = await checkDirOf(spec.checkDir, deps.cwd);
  // Steps from flags or a --pipeline file: whether there are check steps is known now. From the repository's own
  // asp.pipeline.json: once it is cloned (below).
  if (checkDir && !spec.check?.length && (spec.steps?.length || spec.pipeline)) throw noCheckSteps();
  const { docker, settings, clock, log } = deps;
  const startedAt = clock.now();
  const source = resolveRepoSource(spec.repo, deps.cwd);
  const extraSources = resolveExtraRepos(spec, deps.cwd);
  // The model gateway is on when a provider is configured on the host; the keys never enter the sandbox.
  const modelChoice = chooseModel(settings.models, deps.cwd);
  if (spec.pipeline === 'asp' && !modelChoice) {
    throw new AspError('BAD_INPUT', 'the asp pipeline needs a model', 'set OPENAI_API_KEY or ANTHROPIC_API_KEY on the host, or ASP_MODEL=cassette:<file> to replay recorded replies');
  }
  const runId = generateRunId(startedAt);
  const workspace = await claimWorkspace(settings.workspacesRoot, spec.id ?? generateTaskId(spec.task, startedAt), { unique: !spec.id, reclaimUnfinished: deps.reclaimUnfinished });
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

  // The run id is part of the name: a rerun of the same task id must never adopt the volume of a run that died.
  const volume = `asp-ws-${taskId}-${runId}`;
  let containerId: string | undefined;
  let volumeCreated = false;
  let started = false;
  let steps: ResolvedStep[] = [];
  let checkSteps: ResolvedStep[] = [];
  let check: CheckResult | null = null;
  let commit: string | null = null;
  let change: ChangeReport | null = null;
  let extras: ExtraRepo[] = [];
  let extraChanges: ExtraChange[] = [];
  let baseBranch: string | null = null;
  const branch = spec.branch ?? `asp/${taskId}`;
  const sandboxEnvironment = allowedEnv(spec, settings);
  if (modelChoice) {
    for (const name of MODEL_KEY_VARIABLES.filter((variable) => variable in sandboxEnvironment)) {
      delete sandboxEnvironment[name];
      warn(`--env ${name} ignored: model keys stay on the host; the sandbox reaches the model through asp's gateway`);
    }
  }
  const secrets = [...Object.entries(sandboxEnvironment).filter(([name]) => SECRET_NAME.test(name)).map(([, value]) => value), ...modelSecrets(settings.models)];
  const events = new TaskEvents({ taskId, secrets, clock, log, trace, warn, writeOutput: deps.writeOutput, outputCap: spec.outputCap });
  let image: string | null = null;
  let outcome: { status: TaskStatus; exitCode: number; error?: string } = { status: 'error', exitCode: EXIT.infrastructure };
  let failure: unknown;
  let models: TaskGateway | undefined;

  try {
    if (modelChoice) {
      models = await openTaskGateway(modelChoice, settings, spec, { clock, trace, mask: (text) => events.mask(text), warn, record: (entry) => events.record(entry), overrides: deps.gateway });
      log.info({ taskId, provider: models.provider.name, model: models.provider.model }, `model gateway on: ${models.provider.name}:${models.provider.model}`);
    }
    // The clone and the container are independent until the volume is filled: make them side by side, but let
    // both settle before going on, so nothing runs on in the background after a failure.
    const labels = ownershipLabels(owner);
    const [cloned, created] = await settleBoth(
      trace.phase('clone', async () => {
        // A remote repository is fetched into a mirror (incrementally, once per batch) and cloned from there,
        // unless the clone is shaped (shallow or partial): then it comes straight from the origin.
        const shaped = spec.clone?.depth !== undefined || spec.clone?.filter !== undefined;
        const mirrors = deps.mirrors ?? new RepoMirrors(path.join(settings.home, 'mirrors'), settings.hostEnv, githubToken(settings));
        const from = shaped ? source : await mirrors.resolve(source);
        const [primary, others] = await Promise.all([
          cloneRepository(from, workspace.repoDir, spec.ref, settings.hostEnv, { ...spec.clone, token: githubToken(settings) }),
          cloneExtraRepos(extraSources, workspace.dir, { mirrors, env: settings.hostEnv, token: githubToken(settings) }),
        ]);
        extras = others;
        return primary;
      }),
      (async () => {
        const info = await docker.info();
        checkLimitsFit(spec.limits, info);
        checkRuntime(spec.runtime, info);
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
          containerId = await createHardenedContainer(
            docker,
            containerSpec({ name: `asp-${taskId}-${runId}`, image: imageTag, volume, labels, limits: spec.limits, allowedEnv: sandboxEnvironment, runtime: spec.runtime }),
          );
          return containerId;
        });
      })(),
    );
    commit = cloned.commit;
    // The PR goes back to the branch the task started from; a tag or a bare commit has none (the forge's default then).
    baseBranch = /^[0-9a-f]{40,64}$/.test(cloned.ref) || cloned.ref === 'HEAD' ? null : cloned.ref;
    trace.setSource(cloned.commit, cloned.ref);
    const pipeline = await resolvePipeline(spec, workspace.repoDir, deps.cwd);
    steps = pipeline.steps;
    checkSteps = pipeline.check;
    if (checkDir && !checkSteps.length) throw noCheckSteps();

    const sandboxTask: SandboxTask = {
      taskId,
      task: spec.task,
      steps,
      deadlineAt: startedAt.getTime() + spec.limits.timeout,
      outputCapBytes: spec.outputCap,
      diskLimitBytes: spec.limits.disk,
      baseCommit: cloned.commit,
      branch,
      secretEnv: Object.keys(sandboxEnvironment).filter((name) => SECRET_NAME.test(name)),
      ...(extras.length ? { repos: extras.map((extra) => ({ name: extra.name, baseCommit: extra.commit })) } : {}),
      ...(models ? { modelGateway: { port: MODEL_ENDPOINT_PORT, model: models.provider.model } } : {}),
    };
    await writeHostFile(workspace, 'task', JSON.stringify(sandboxTask, null, 2) + '\n');
    // The task text, whole, for $ASP_TASK_FILE: packed into the workspace tar, so the runner need not write it.
    await writeFile(taskTextFile(workspace), spec.task);
    const id = created;
    // The workspace goes in on the runner's stdin once the container runs (host-messages.ts), into the volume.
    const feed = (stdin: Writable) =>
      trace.phase('volume-fill', () =>
        feedSandbox(stdin, sandboxTask, packForSandbox(workspace.dir, ['repo', { from: path.relative(workspace.dir, hostFilePath(workspace, 'task')), as: '.asp/task.json' }, taskTextEntry(workspace), ...(extras.length ? ['repos'] : [])])).catch((error: unknown) => {
          throw new AspError('WORKSPACE_FAILED', `cannot send the workspace ${workspace.dir} into the sandbox: ${errorMessage(error)}`, 'check that the workspace directory is readable and the disk is not full');
        }),
      );
    events.open(hostFilePath(workspace, 'events'));

    started = true;
    const end = await runSession(
      docker,
      id,
      { steps, taskTimeoutMs: spec.limits.timeout, deadlineAt: sandboxTask.deadlineAt, signal: deps.signal, feed, stop: models?.gateway.stopped, verifyIdentity: identityMismatch },
      {
        onMessage: (message, reply) => events.handle(message, reply, models?.gateway),
        onWarning: (message) => {
          events.record({ type: 'host.warning', message });
          warn(message);
        },
        onRunnerStderr: (line) => {
          events.record({ type: 'runner.stderr', data: line.slice(0, 4096) });
          log.debug({ taskId }, `sandbox stderr: ${line.slice(0, 4096)}`);
        },
      },
    );
    outcome = outcomeOf(end);
    events.steps.stop(clock.now(), whyStopped(end));
    if (end.kind === 'exited' && !end.taskEnd && events.stepStarts.size === 0 && steps.length > 0) {
      // The runner stopped before it ran anything (the workspace did not unpack, its runtime failed): that is asp's
      // failure, not the task's, and a batch retries it.
      outcome = { status: 'error', exitCode: EXIT.infrastructure, error: `the sandbox stopped (exit ${end.statusCode}) before running any step` };
    }
    if (outcome.status === 'timeout' || outcome.status === 'interrupted' || end.kind === 'stopped') trace.abandonOpenSteps(outcome.error ?? outcome.status, outcome.exitCode);
    if (end.kind === 'exited' && !end.taskEnd) warn(`the sandbox ended without reporting (exit ${end.statusCode}${end.statusCode === 137 ? ': killed, out of memory?' : ''})`);

    if (!deps.forceSignal?.aborted) {
      // The runner streamed `.asp/` when it was small and the task ran to its end; otherwise copy it out of the container.
      const streamed = end.kind === 'exited' ? events.artifacts.result() : { missing: `the task ended by ${end.kind}` };
      if ('missing' in streamed && end.kind === 'exited' && streamed.missing !== 'not streamed') warn(`artifacts stream unusable (${streamed.missing}): copying .asp/ out of the container`);
      const extracted = await trace.phase('copy-out', () =>
        'tar' in streamed ? extractChecked(Readable.from([streamed.tar]), workspace.artifactsDir, ARTIFACT_EXTRACT) : copyOut(docker, id, workspace, deps.forceSignal, warn),
      );
      if (!extracted) warn('copy-out cut short by a second interrupt: .asp/ holds what arrived before it');
      for (const rejected of extracted?.rejected ?? []) warn(`not copied out of the sandbox: .asp/${rejected.name.replace(/^\.asp\/?/, '')} (${rejected.reason})`);
      // Nothing trusts these names (asp reads its own state from .asp-host/ only), but a step writing them is probing:
      // said once each. .asp/task.json is asp's own input coming back, and is replaced by asp's copy.
      for (const planted of plantedHostNames(extracted?.files.map((file) => file.path).filter((file) => file !== HOST_FILES.task) ?? [])) {
        const replaced = USER_COPIES.some((file) => HOST_FILES[file] === planted);
        warn(`.asp/${planted} came out of the sandbox under the name of one of asp's own files: ${replaced ? 'replaced by asp\'s copy' : 'kept as data'}, never read as asp's (asp's state is in .asp-host/)`);
      }
    }
    if (commit && !deps.forceSignal?.aborted) {
      const base = commit;
      const fetched = await trace.phase('fetch-changes', () => fetchChanges(workspace.repoDir, workspace.artifactsDir, { base, branch, env: settings.hostEnv }));
      if (fetched.kind === 'fetched') {
        change = fetched.change;
        log.info({ taskId, branch, commits: change.commits }, `changes: ${change.commits} commit(s) on ${branch}, ${change.filesChanged} file(s) changed, +${change.insertions} -${change.deletions}`);
      } else if (fetched.kind === 'rejected') warn(`changes not accepted: ${fetched.reason}`);
      else log.info({ taskId }, 'no changes to the repository');
      if (extras.length) {
        extraChanges = await trace.phase('fetch-changes:repos', () => fetchExtraChanges(extras, workspace.artifactsDir, branch, settings.hostEnv));
        for (const extra of extraChanges) {
          if (extra.rejected) warn(`changes to ${extra.name} not accepted: ${extra.rejected}`);
          else if (extra.change) log.info({ taskId, repo: extra.name }, `changes to ${extra.name}: ${extra.change.commits} commit(s), ${extra.change.filesChanged} file(s) changed`);
        }
      }
    }
    const checkImage = image;
    if (checkSteps.length && outcome.status === 'passed' && checkImage && !deps.forceSignal?.aborted) {
      // The steps passed in their own sandbox: the clean-room check, in a fresh one, decides whether the task did.
      log.info({ taskId, commit: change?.head ?? sandboxTask.baseCommit }, `clean-room check: ${checkSteps.length} step(s) on ${change ? `the change (${change.head.slice(0, 12)})` : 'the base commit (no change came back)'}`);
      check = await trace.phase('check', () =>
        runCheck(
          {
            runId,
            agentTask: sandboxTask,
            image: checkImage,
            labels: ownershipLabels(owner),
            limits: spec.limits,
            allowedEnv: sandboxEnvironment,
            runtime: spec.runtime,
            steps: checkSteps,
            checkDir,
            workspace,
            change,
            extraChanges: new Map(extraChanges.map((extra) => [extra.name, extra.change])),
          },
          { docker, trace, events, log, warn, signal: deps.signal, forceSignal: deps.forceSignal },
        ),
      );
      if (check.status !== 'passed') outcome = { status: check.status, exitCode: check.exitCode, ...(check.error ? { error: check.error } : {}) };
    }
  } catch (error) {
    failure = error;
    outcome = { status: 'error', exitCode: error instanceof AspError ? exitCodeFor(error.code) : EXIT.infrastructure, error: errorMessage(error) };
  } finally {
    await events.close();
    await models?.provider.close?.().catch((error: unknown) => warn(`could not save the cassette: ${errorMessage(error)}`));
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
  // After the copy-out: the user's copies in .asp/, and the record of each step the sandbox could not write.
  await copyAllForUser(workspace, ['task', 'events'], warn);
  events.steps.stop(finishedAt, outcome.error ?? 'the task ended before the step did');
  const stepOutcomes = stepResults(steps, events.stepStarts, events.stepEnds, outcome.status, events.steps);
  const recorded = await writeMissingStepRecords(workspace.artifactsDir, events.steps, stepOutcomes, warn);
  if (recorded.length) log.info({ taskId, files: recorded }, `the sandbox could not write ${recorded.map((file) => `.asp/${file}`).join(', ')}: written by asp from the protocol`);
  const document = trace.finish({ ...outcome, durationMs });
  // PROBE scores, .asp/trace.json, the trace store, then Langfuse (bounded; the outbox when it fails).
  let published = await publishTrace(document, {
    settings,
    mode: deps.traceMode,
    artifactsDir: workspace.artifactsDir,
    stateDir: workspace.stateDir,
    testsDir: checkSteps.length ? (check?.artifactsDir ?? null) : undefined,
    plannedSteps: steps.length,
    log,
    warn,
    signal: deps.forceSignal,
  });
  let delivery: DeliveryOutcome | undefined;
  let deliveries: DeliveryEntry[] = [];
  if (outcome.status === 'passed' && (spec.hitl || spec.push || spec.pr)) {
    const plan = (remote: string, baseBranchOf: string | null, changed: ChangeReport): DeliveryPlan => ({
      taskId, task: spec.task, remote, baseBranch: baseBranchOf, push: spec.push || spec.pr, pr: spec.pr, draft: spec.draft, hitl: spec.hitl, change: changed,
    });
    // The task's own repository first, then the others of a multi-repo task: one gate, one decision for all.
    const wanted = [
      ...(change ? [{ repo: null, plan: plan(source.location, baseBranch, change), repoDir: workspace.repoDir }] : []),
      ...extraChanges.flatMap((extra) => {
        const repo = extras.find((entry) => entry.name === extra.name);
        return extra.change && repo ? [{ repo: repo.name, plan: plan(repo.source.location, repo.baseBranch, extra.change), repoDir: repo.dir }] : [];
      }),
    ];
    if (!wanted.length) log.info({ taskId }, 'no changes: nothing to review, push or open a pull request for');
    else {
      const first = wanted[0] as (typeof wanted)[number];
      const decision = deps.decision ?? (spec.hitl && deps.ask ? await deps.ask({ taskId, change: first.plan.change, document }) : undefined);
      deliveries = await deliverAll(wanted, decision, (repoDir) => deliveryContext(settings, repoDir, log, document, published));
      const outcomes = deliveries.map((entry) => entry.outcome);
      delivery = outcomes.find((entry) => entry.error) ?? outcomes[0];
      if (delivery?.error) warn(`delivery failed: ${delivery.error}`);
      recordDelivery(document, spec.hitl, outcomes);
      if (pending(deliveries)) {
        await saveDeliveries(workspace, deliveries);
        log.info({ taskId }, delivery?.error ? `the work is kept in ${workspace.dir}: asp approve ${taskId} tries again (--branch B pushes under another branch, --deny discards it)` : `awaiting approval: asp approve ${taskId} (or --deny)`);
      }
      published = await publishTrace(document, { settings, mode: deps.traceMode, artifactsDir: workspace.artifactsDir, stateDir: workspace.stateDir, testsDir: checkSteps.length ? (check?.artifactsDir ?? null) : undefined, plannedSteps: steps.length, log, warn, signal: deps.forceSignal, previous: published });
    }
  }
  const keepClone = spec.keep || pending(deliveries);
  if (!keepClone) {
    await removePath(workspace.repoDir);
    await removePath(path.join(workspace.dir, 'repos'));
  }
  if (delivery?.error) outcome = { status: 'failed', exitCode: EXIT.taskFailed, error: delivery.error };
  const awaiting = delivery?.hitlStatus === 'awaiting_approval' || delivery?.hitlStatus === 'deferred';
  await writeOwnerFile(workspace, owner, awaiting ? 'awaiting_approval' : outcome.status, startedAt, finishedAt);
  const result: TaskResult = {
    taskId,
    runId,
    traceId: trace.traceId,
    status: awaiting ? 'awaiting_approval' : outcome.status,
    exitCode: outcome.exitCode,
    durationMs,
    commit,
    image,
    steps: stepOutcomes,
    check,
    artifacts: await listArtifacts(workspace),
    change,
    tracePath,
    traceDelivery: published.delivery,
    delivery: delivery ?? null,
    repos: extraChanges,
    workspacePath: workspace.dir,
    // True whenever the clone stays: --keep, or changes waiting for asp approve (a decision, or a failed push).
    kept: keepClone,
    ...(models ? { models: modelUse(models) } : {}),
    warnings,
    ...(outcome.error ? { error: outcome.error } : {}),
  };
  await writeResultFile(workspace, result);
  if (failure) throw failure;
  return result;
}

function noCheckSteps(): AspError {
  return new AspError('BAD_INPUT', '--check-dir without check steps: nothing would read its files', 'add --check name=command (or a "check" list to the pipeline file)');
}

async function settleBoth<A, B>(first: Promise<A>, second: Promise<B>): Promise<[A, B]> {
  const [a, b] = await Promise.allSettled([first, second]);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
  return [a.value, b.value];
}

/** Why the sandbox stopped, for the record of a step it stopped under. */
/** Copies `.asp/` out; a second interrupt (`forceSignal`) cuts it short and resolves undefined, so removal comes at once. */
async function copyOut(docker: DockerPort, containerId: string, workspace: HostWorkspace, forceSignal: AbortSignal | undefined, warn: (message: string) => void): Promise<ExtractResult | undefined> {
  const archive = await docker.getArchive(containerId, SANDBOX_ARTIFACTS_DIR).catch((error: unknown) => {
    // A sandbox that stopped before its workspace was unpacked has no .asp/: nothing to copy is not a second failure.
    if (error instanceof AspError && error.code === 'NOT_FOUND') return undefined;
    throw error;
  });
  if (!archive) {
    warn('the sandbox has no .asp/ to copy out');
    return { files: [], rejected: [] };
  }
  const cut = () => archive.destroy();
  forceSignal?.addEventListener('abort', cut, { once: true });
  try {
    return await extractChecked(archive, workspace.artifactsDir, ARTIFACT_EXTRACT);
  } catch (error) {
    if (forceSignal?.aborted) return undefined;
    throw error;
  } finally {
    forceSignal?.removeEventListener('abort', cut);
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
  // The host clone goes later, after delivery: a push or `asp approve` needs it. When nothing ran it goes now.
  if (!target.started) await removePath(target.workspace.repoDir);
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
  const { timeout, memory, cpus, pids, tmpfs, disk } = spec.limits;
  return { timeout_ms: timeout, memory_bytes: memory, cpus, pids, tmpfs_bytes: tmpfs, disk_bytes: disk };
}
