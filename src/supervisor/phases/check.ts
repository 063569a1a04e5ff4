import { readdirSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { AspError, errorMessage, EXIT } from '../../core/asp-error.js';
import type { ResolvedStep } from '../../config/pipeline.js';
import type { Limits } from '../../config/task-spec.js';
import { extractChecked, packForSandbox, type ExtractResult } from '../../workspace/workspace-tar.js';
import type { Sandbox, SandboxBackend } from '../../backend/sandbox-backend.js';
import { identityMismatch } from '../../backend/sandbox-policy.js';
import { CleanupStack } from '../../core/cleanup-stack.js';
import { packTree } from '../../workspace/tar-pack.js';
import { SANDBOX_REPO_DIR, SANDBOX_REPOS_DIR, type ProtocolMessage, type SandboxTask } from '../../protocol/messages.js';
import type { TaskStatus } from '../../tracing/trace-model.js';
import type { TraceRecorder } from '../../tracing/trace-recorder.js';
import type { ChangeReport } from '../../workspace/change-bundle.js';
import { taskTextEntry } from '../../workspace/host-state.js';
import type { HostWorkspace } from '../../workspace/host-workspace.js';
import type { Log } from '../../core/log.js';
import type { Clock, Deadline } from '../../core/clock.js';
import { runSession, untilStopped } from '../sandbox-session.js';
import { outcomeOf, stepResults, whyStopped, type StepResult } from '../session-outcome.js';
import { writeMissingStepRecords } from '../step-records.js';
import type { TaskEgress } from '../task-egress.js';
import type { TaskEvents } from '../task-events.js';
import { feedSandbox, withBudget } from '../workspace-feed.js';

/** Check steps appear under this prefix in the trace, events.jsonl and the printed output; no step name has a ':'. */
export const CHECK_STEP_PREFIX = 'check:';
/** Where the check's own `.asp/` goes on the host: beside the agent's artifacts, never over them. */
export const CHECK_ARTIFACTS_DIR = 'check';

/** What the clean-room check decided, as `result.check` carries it. */
export interface CheckResult {
  status: TaskStatus;
  exitCode: number;
  error?: string;
  /** What the check ran against: the commit of the accepted change, or the base commit when nothing changed. */
  commit: string;
  steps: StepResult[];
  /** `<workspace>/.asp/check/`: the check's own artifacts (its test_results.json gives probe_accuracy). */
  artifactsDir: string;
}

export interface CheckRequest {
  runId: string;
  /** What the agent's sandbox was given: the check inherits its task, caps and repositories. */
  agentTask: SandboxTask;
  /** The task's deadline: the check's sandbox is stopped at it too. */
  deadline: Deadline;
  image: string;
  labels: Record<string, string>;
  limits: Limits;
  allowedEnv: Record<string, string>;
  runtime: string | undefined;
  steps: ResolvedStep[];
  /** The host directory of `--check-dir`, already checked to be a directory. */
  checkDir: string | undefined;
  workspace: HostWorkspace;
  /** The change to the task's own repository the host fetched and accepted; null when none came back. */
  change: ChangeReport | null;
  /** The accepted change of each other repository of a multi-repo task, by name. */
  extraChanges: Map<string, ChangeReport | null>;
}

export interface CheckDeps {
  backend: SandboxBackend;
  clock: Clock;
  trace: TraceRecorder;
  events: TaskEvents;
  log: Log;
  warn: (message: string) => void;
  /** The task's egress (`--allow-host`), when it has any: the check's sandbox gets a relay of its own. */
  egress?: TaskEgress | undefined;
  signal?: AbortSignal | undefined;
  forceSignal?: AbortSignal | undefined;
}

/**
 * The clean-room check, as SWE-bench grades: a FRESH hardened sandbox (new container, new volume) that holds the
 * base commit plus the change the steps produced, fetched from their bundle and checked by the host, and nothing
 * else of the first sandbox (no /tmp, no processes, no untracked files). With a check dir, its files are only here,
 * read-only at /workspace/check. The check steps' outcome is the task's verdict.
 */
export async function runCheck(request: CheckRequest, deps: CheckDeps): Promise<CheckResult> {
  const { backend, trace, events, warn } = deps;
  const { taskId, repos = [] } = request.agentTask;
  const artifactsDir = path.join(request.workspace.artifactsDir, CHECK_ARTIFACTS_DIR);
  const commit = request.change?.head ?? request.agentTask.baseCommit;
  const prefixed = request.steps.map((step) => ({ ...step, name: `${CHECK_STEP_PREFIX}${step.name}` }));
  // The check's stack is its own and never kept, whatever --keep says: it is undone when the check ends.
  await using stack = new CleanupStack(({ error }) => warn(`cleanup of the check incomplete: ${errorMessage(error)} (asp reap will finish it)`));
  const sandbox = await trace.phase('check:container-create', () =>
    backend.createSandbox(
      {
        taskId,
        runId: request.runId,
        role: 'check',
        image: request.image,
        labels: request.labels,
        limits: request.limits,
        env: request.allowedEnv,
        runtime: request.runtime,
        checkDir: request.checkDir !== undefined,
      },
      stack,
    ),
  );
  // The agent's task with the check's steps, and no model gateway: the check grades, it does not ask a model.
  const { modelGateway: _gateway, ...inherited } = request.agentTask;
  const checkouts = [
    ...(request.change ? [{ dir: SANDBOX_REPO_DIR, change: request.change }] : []),
    ...repos.flatMap((repo) => {
      const change = request.extraChanges.get(repo.name);
      return change ? [{ dir: path.posix.join(SANDBOX_REPOS_DIR, repo.name), change }] : [];
    }),
  ];
  const sandboxTask: SandboxTask = {
    ...inherited,
    steps: request.steps,
    check: { checkout: checkouts.map(({ dir, change }) => ({ dir, commit: change.head, branch: change.branch })), files: request.checkDir !== undefined },
  };
  // The host's own clone: the base commit, and the change's objects under the ref the fetch wrote. Nothing else.
  const entries = ['repo', taskTextEntry(request.workspace), ...(repos.length ? ['repos'] : [])];
  const feed = (stdin: Writable) =>
    feedSandbox(stdin, withBudget(sandboxTask, request.deadline), packForSandbox(request.workspace.dir, entries), request.checkDir !== undefined ? packCheckDir(request.checkDir) : undefined).catch(
      (error: unknown) => {
        throw new AspError('WORKSPACE_FAILED', `cannot send the check's workspace into its sandbox: ${errorMessage(error)}`, 'check that the workspace and --check-dir are readable');
      },
    );
  const rename = (message: ProtocolMessage): ProtocolMessage => ('step' in message && typeof message.step === 'string' ? { ...message, step: `${CHECK_STEP_PREFIX}${message.step}` } : message);
  trace.planSteps(prefixed);
  // The check's test commands reach the same hosts as the steps', out of the same byte cap.
  const relay = deps.egress?.relay();
  stack.defer('egress', () => relay?.close());
  const end = await trace.phase('check:run', () =>
    runSession(
      sandbox,
      // The session reads the runner's own lines, before the renaming: its deadlines go by the steps' own names.
      {
        steps: request.steps,
        taskTimeoutMs: request.limits.timeout,
        deadline: request.deadline,
        signal: deps.signal,
        feed,
        env: request.allowedEnv,
        verifyIdentity: identityMismatch,
        timePhase: (name, action) => trace.phase(`check:${name}`, action),
      },
      {
        // The check's stream goes through the task's events (one events.jsonl, one trace), its steps renamed.
        onMessage: (message, reply) => (message.type === 'artifacts.chunk' || message.type === 'artifacts.end' ? undefined : events.handle(rename(message), reply, undefined, relay)),
        onStdin: (stdin) => relay?.attach(stdin),
        onWarning: (message) => {
          events.record({ type: 'host.warning', phase: 'check', message });
          warn(`check: ${message}`);
        },
        onRunnerStderr: (line) => events.record({ type: 'runner.stderr', phase: 'check', data: line.slice(0, 4096) }),
      },
    ),
  );
  // Its connections end with its session, not after the copy-out.
  relay?.close();
  let outcome = outcomeOf(end);
  events.steps.stop(deps.clock.now(), whyStopped(end));
  if (end.kind === 'exited' && !end.taskEnd) outcome = { status: 'error', exitCode: EXIT.infrastructure, error: `the check's sandbox stopped (exit ${end.statusCode}) without reporting` };
  if (events.engineFault && outcome.status !== 'timeout' && outcome.status !== 'interrupted') outcome = { status: 'error', exitCode: EXIT.infrastructure, error: events.engineFault };
  if (outcome.status !== 'passed' && !outcome.error) outcome = { ...outcome, error: 'the clean-room check failed' };
  const steps = stepResults(prefixed, events.stepStarts, events.stepEnds, outcome.status, events.steps).map((step) => ({ ...step, name: step.name.slice(CHECK_STEP_PREFIX.length) }));
  if (!deps.forceSignal?.aborted) {
    const extracted = await trace.phase('check:copy-out', () => copyCheckArtifacts(sandbox, end.kind === 'exited' && end.early === true, artifactsDir, warn));
    for (const rejected of extracted.rejected) warn(`not copied out of the check's sandbox: .asp/${rejected.name.replace(/^\.asp\/?/, '')} (${rejected.reason})`);
    // A check step killed before it wrote its record (a deadline) gets one from the host, as the steps' do.
    await writeMissingStepRecords(artifactsDir, events.steps, steps, warn, (name) => `${CHECK_STEP_PREFIX}${name}`);
  }
  return { ...outcome, commit, steps, artifactsDir };
}

/**
 * `.asp/` of the check, into `<workspace>/.asp/check/`. A `check/` the agent's sandbox left in its own `.asp/` is
 * replaced: that name belongs to the check.
 */
async function copyCheckArtifacts(sandbox: Sandbox, stopping: boolean, destination: string, warn: (message: string) => void): Promise<ExtractResult> {
  if (
    await stat(destination).then(
      () => true,
      () => false,
    )
  ) {
    warn(`the steps left a .asp/${CHECK_ARTIFACTS_DIR}/ of their own: replaced by the check's artifacts`);
    await rm(destination, { recursive: true, force: true });
  }
  if (stopping) await untilStopped(sandbox);
  const archive = await sandbox.fetchArtifacts();
  if (!archive) return { files: [], rejected: [] };
  return extractChecked(archive, destination, { root: '.asp' });
}

/** The check dir's contents (not the dir itself, whose mode would land on the sandbox's mount point), owned by root. */
function packCheckDir(dir: string) {
  return packTree(dir, readdirSync(dir).sort(), { uid: 0, gid: 0, uname: 'root', gname: 'root' });
}

/** `--check-dir`: an existing directory, named before anything is made. */
export async function checkDirOf(dir: string | undefined, cwd: string): Promise<string | undefined> {
  if (dir === undefined) return undefined;
  const resolved = path.resolve(cwd, dir);
  const info = await stat(resolved).catch(() => undefined);
  if (!info) throw new AspError('BAD_INPUT', `--check-dir ${dir} does not exist`, 'pass --check-dir the directory of files only the check sees (e.g. hidden tests)');
  if (!info.isDirectory()) throw new AspError('BAD_INPUT', `--check-dir ${dir} is not a directory`, 'pass --check-dir a directory; its files appear read-only at /workspace/check');
  return resolved;
}
