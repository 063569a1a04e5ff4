/**
 * asp-sandbox: the in-container runner. It reads its task and the workspace tar from stdin, runs the task's steps
 * one after another in /workspace/repo, writes /workspace/.asp/<step>.json for each, and speaks the task protocol
 * on stdout: the only thing on stdout is protocol lines, step output travels inside `step.log` events, and small
 * artifacts come back as `artifacts.chunk`s. It depends on nothing but Node, tar and the protocol module, because
 * the image carries no node_modules.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import {
  ARTIFACTS_CHUNK_BYTES,
  ARTIFACTS_STREAM_MAX_BYTES,
  encodeMessage,
  PROTOCOL_VERSION,
  SANDBOX_ARTIFACTS_DIR,
  SANDBOX_CHECK_DIR,
  SANDBOX_REPO_DIR,
  SANDBOX_TASK_TEXT_FILE,
  SANDBOX_WORKSPACE,
  TASK_ENV_MAX_BYTES,
  type ProtocolMessage,
  type RunnerIdentity,
  type SandboxTask,
} from '../src/protocol/messages.js';
import { SecretMasker } from '../src/protocol/secret-masker.js';
import { collectArtifacts, TAR_EXCLUDES } from './collect.js';
import { copyStepReports } from './step-reports.js';
import { watchDiskUsage } from './disk-watchdog.js';
import { engineDiskFull } from './engine-disk.js';
import { HostInput } from './host-input.js';
import type { EgressProxy } from './egress-proxy.js';
import type { ModelEndpoint } from './model-endpoint.js';
import { closeTerminationLog, makeTmpSticky, openWorkspaceToSteps, stepEnv, tool, toolEnv } from './runtime-tools.js';
import { asStepUser, canDropToStepUser, endStepProcesses, writeAsStepUser } from './step-user.js';

const RUNNER = `asp-sandbox/${PROTOCOL_VERSION}`;
const TAIL_BYTES = 4096;
const EXIT_DEADLINE = 124;
/** How long a step's output may go on after its shell exited (a background process holding stdout open). */
const LINGER_MS = 2000;
/** Exit code of a step stopped for filling the workspace past --disk (ENOSPC's errno). */
const EXIT_DISK = 28;
/** Exit code of a step some of whose processes could not be killed. */
const EXIT_UNKILLABLE = 125;
/** A tar header and padding per file, for the estimate of whether `.asp/` is small enough to stream. */
const TAR_ENTRY_OVERHEAD = 1024;
/**
 * The host enforces every deadline by killing the container. The runner's own timers are backstops for a
 * host that is gone, so they fire this much later and never race the host.
 */
const BACKSTOP_GRACE_MS = 5000;

function emit(message: ProtocolMessage): void {
  process.stdout.write(encodeMessage(message));
}

interface StepOutcome {
  exitCode: number;
  timedOut: boolean;
}

let currentStep = 'task';
/** What steps get when the host runs a model gateway: the loopback endpoint and a key that is no key. */
let gatewayEnv: Record<string, string> = {};
/** What steps get when the task allows egress: the loopback proxy's variables (egress-proxy.ts). */
let egressEnv: Record<string, string> = {};
/** Never a real key: the real one stays on the host. Agent CLIs just need the variable to be set. */
const DUMMY_API_KEY = 'asp-gateway-no-key';
/** Values of the secret variables named by the host: masked in every line the runner emits. */
let secrets: string[] = [];

/** setTimeout fires at once past 2^31-1 ms; clamp long deadlines. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * What is left of the task, counted from now on this runner's monotonic clock: the host's budget when it sent one
 * (its own clock, and this machine's, may be set anywhere), else the wall-clock deadline of an older host.
 */
function taskBudgetMs(task: SandboxTask): number {
  if (typeof task.budgetMs === 'number' && Number.isFinite(task.budgetMs)) return Math.max(0, task.budgetMs);
  return task.deadlineAt - Date.now();
}

/**
 * Ends the running step: every process of the step user dies, daemons that left the step's process group and
 * session included. The step's own 'close' then settles runStep.
 */
function endStep(): void {
  ending = endStepProcesses();
}
/** The sweep endStep started (a deadline, the disk watchdog), which runStep waits out before it writes anything. */
let ending: Promise<number[]> | undefined;

/** `ASP_TASK` as a step gets it: whole when it fits the kernel's limit, else cut on a character with a marker. */
export function taskForEnv(task: string): string {
  if (Buffer.byteLength(task) <= TASK_ENV_MAX_BYTES) return task;
  const marker = `\n[asp: the task is cut here at ${TASK_ENV_MAX_BYTES} bytes; all of it is in $ASP_TASK_FILE]`;
  const room = TASK_ENV_MAX_BYTES - Buffer.byteLength(marker);
  // A cut through a multi-byte character decodes to U+FFFD: drop it.
  return (
    Buffer.from(task)
      .subarray(0, room)
      .toString('utf8')
      .replace(/\uFFFD+$/, '') + marker
  );
}

async function runStep(task: SandboxTask, step: SandboxTask['steps'][number]): Promise<StepOutcome> {
  const started = Date.now();
  // The duration on the monotonic clock: a wall clock set back or forward mid-step does not stretch or shrink it.
  const startedMs = performance.now();
  currentStep = step.name;
  emit({ type: 'step.start', step: step.name, run: step.run, timeoutMs: step.timeoutMs, at: new Date(started).toISOString() });
  const shell = existsSync('/bin/bash') ? '/bin/bash' : '/bin/sh';
  // A step given as a list runs as it is (found on the image's PATH), without a shell: an image may have none.
  const [program = shell, ...args] = step.argv?.length ? step.argv : [shell, '-c', step.run];
  // The step user: it can touch nothing of the runner's (step-user.ts).
  const child = spawn(
    program,
    args,
    asStepUser({
      cwd: SANDBOX_REPO_DIR,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...stepEnv(shell),
        ASP_TASK: taskForEnv(task.task),
        ASP_TASK_FILE: SANDBOX_TASK_TEXT_FILE,
        ASP_TASK_ID: task.taskId,
        ASP_STEP: step.name,
        ASP_ARTIFACTS: SANDBOX_ARTIFACTS_DIR,
        ...(task.check?.files ? { ASP_CHECK_DIR: SANDBOX_CHECK_DIR } : {}),
        ...gatewayEnv,
        ...egressEnv,
      },
    }),
  );
  let outputBytes = 0;
  let droppedBytes = 0;
  /** Whether the cap was reached and said so: the marker goes out once, with the first byte dropped. */
  let capped = false;
  let tail = Buffer.alloc(0);
  const flushers: Array<() => void> = [];
  const relay = (stream: 'stdout' | 'stderr') => {
    const decoder = new StringDecoder('utf8');
    const masker = new SecretMasker(secrets);
    const send = (data: string) => {
      if (data) emit({ type: 'step.log', step: step.name, stream, data });
    };
    const onData = (chunk: Buffer) => {
      outputBytes += chunk.length;
      tail = Buffer.concat([tail, chunk]).subarray(-TAIL_BYTES);
      const room = Math.max(0, task.outputCapBytes - (outputBytes - chunk.length));
      const kept = room >= chunk.length ? chunk : chunk.subarray(0, room);
      droppedBytes += chunk.length - kept.length;
      if (kept.length) send(masker.push(decoder.write(kept)));
      // The first byte past the cap says so, whether the cap fell inside a chunk or exactly between two.
      if (kept.length < chunk.length && !capped) {
        capped = true;
        send(masker.flush());
        emit({ type: 'step.log', step: step.name, stream: 'stderr', data: `\n[asp: output of step "${step.name}" passed ${task.outputCapBytes} bytes; the rest is dropped]\n` });
      }
    };
    flushers.push(() => send(masker.push(decoder.end()) + masker.flush()));
    return onData;
  };
  child.stdout.on('data', relay('stdout'));
  child.stderr.on('data', relay('stderr'));

  let timedOut = false;
  /** Why the runner ended the step itself (the disk watchdog); exit 28. */
  let reason: string | undefined;
  /** Why the step could not start at all; exit 127, as a shell says of a command it cannot find. */
  let notStarted: string | undefined;
  const timer = setTimeout(
    () => {
      timedOut = true;
      reason = 'deadline passed (stopped by the sandbox backstop)';
      endStep();
    },
    Math.min(step.timeoutMs + BACKSTOP_GRACE_MS, MAX_TIMER_MS),
  );
  const stopWatchdog = watchDiskUsage(SANDBOX_WORKSPACE, task.diskLimitBytes, (bytes) => {
    reason = `the workspace grew to ${bytes} bytes, past its ${task.diskLimitBytes}-byte disk limit`;
    emit({ type: 'step.log', step: step.name, stream: 'stderr', data: `\n[asp: ${reason}; stopping the step]\n` });
    endStep();
  });

  let linger: NodeJS.Timeout | undefined;
  const exitCode = await new Promise<number>((resolve) => {
    child.on('error', (error) => {
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      if (step.argv?.length) notStarted = missing ? `the image has no program ${program} (looked for on its PATH)` : `cannot start ${program}: ${error.message}`;
      // An image without a shell (distroless, scratch) cannot run a step given as a command line.
      else if (missing && !existsSync(shell)) notStarted = `the image has no ${shell}: a step given as a command line needs a POSIX shell in the image; give it as a list of arguments instead`;
      else notStarted = `cannot start ${shell}: ${error.message}`;
      emit({ type: 'step.log', step: step.name, stream: 'stderr', data: `asp-sandbox: ${notStarted}\n` });
      resolve(127);
    });
    const status = (code: number | null, signal: NodeJS.Signals | null) => code ?? (signal ? 128 + signalNumber(signal) : 1);
    child.on('close', (code, signal) => resolve(status(code, signal)));
    // The step is its shell: when the shell exits, the step is over. A background process it left holding
    // stdout/stderr open would otherwise keep the step waiting until its deadline. Give the output a moment,
    // then end whatever the step left behind.
    // (The sweep below ends that process; this timer only stops waiting for its output, and never outlives the step.)
    child.on('exit', (code, signal) => {
      linger = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        resolve(status(code, signal));
      }, LINGER_MS);
    });
  });
  clearTimeout(timer);
  clearTimeout(linger);
  // A sweep the deadline or the watchdog started must be over before anything runs as the step user again (the
  // step record's writer): it would take that for one of the step's processes.
  stopWatchdog();
  await ending;
  ending = undefined;
  // No process of a step outlives it: not a daemon that left with setsid, not one a fork bomb left. The next step
  // starts only once none is left, so nothing of this step can touch the files the next one reads.
  const survivors = await endStepProcesses();
  for (const flush of flushers) flush();
  if (survivors.length) {
    reason = `${survivors.length} process(es) of the step survived SIGKILL (pids ${survivors.slice(0, 10).join(' ')})`;
    emit({ type: 'warning', message: `step "${step.name}": ${reason}` });
  }
  const finalCode = timedOut ? EXIT_DEADLINE : survivors.length ? EXIT_UNKILLABLE : reason ? EXIT_DISK : exitCode;
  reason ??= notStarted;
  const durationMs = Math.round(performance.now() - startedMs);
  emit({ type: 'step.end', step: step.name, exitCode: finalCode, durationMs, timedOut, droppedBytes, ...(reason ? { reason } : {}) });
  // Written as the step user: the runner never opens a path in the workspace, where a step may have planted a link.
  await writeAsStepUserOrWarn(
    path.join(SANDBOX_ARTIFACTS_DIR, `${step.name}.json`),
    JSON.stringify(
      {
        name: step.name,
        command: step.run,
        exitCode: finalCode,
        timedOut,
        durationMs,
        startedAt: new Date(started).toISOString(),
        endedAt: new Date(started + durationMs).toISOString(),
        outputBytes,
        droppedBytes,
        ...(reason ? { reason } : {}),
        outputTail: new SecretMasker(secrets).mask(tail.toString('utf8')),
      },
      null,
      2,
    ) + '\n',
  );
  return { exitCode: finalCode, timedOut };
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
  return numbers[signal] ?? 0;
}

async function writeAsStepUserOrWarn(file: string, content: string): Promise<void> {
  await writeAsStepUser(file, content).catch((error: unknown) => emit({ type: 'warning', message: error instanceof Error ? error.message : String(error) }));
}

function finish(status: 'passed' | 'failed' | 'timeout', exitCode: number): void {
  emit({ type: 'task.end', status, exitCode });
  process.exitCode = exitCode;
}

async function main(): Promise<void> {
  // SIGUSR1 would open Node's inspector on 127.0.0.1:9229, where a step could rewrite the runner. Steps cannot
  // signal the runner (another uid), and even so: with a listener installed, Node starts no inspector.
  process.on('SIGUSR1', () => {});
  // On Kubernetes the pod starts before asp can attach, and what the runner writes before that is lost: there it
  // says hello only once the host's first bytes arrived (the host writes only once it is attached).
  if (process.env.ASP_HELLO_AFTER_INPUT === '1') {
    await firstInput();
    if (process.stdin.readableEnded || process.stdin.destroyed) {
      process.exitCode = 70;
      return;
    }
  }
  emit({ type: 'hello', protocolVersion: PROTOCOL_VERSION, runner: RUNNER, ...(await ownIdentity()) });
  if (!canDropToStepUser()) {
    // Without root the runner cannot run steps as another uid, and a step of its own uid could take it over.
    emit({ type: 'warning', message: `asp-sandbox must start as root (uid 0) to run steps as uid 1000; it runs as uid ${process.getuid?.()}` });
    process.exitCode = 70;
    process.stdin.destroy();
    return;
  }
  try {
    openWorkspaceToSteps(SANDBOX_WORKSPACE);
    makeTmpSticky();
    closeTerminationLog();
  } catch (error) {
    emit({ type: 'warning', message: `the workspace cannot be opened to the steps: ${error instanceof Error ? error.message : String(error)}` });
    process.exitCode = 70;
    process.stdin.destroy();
    return;
  }
  // The host writes the task first, then the workspace tar, on stdin (host-messages.ts).
  const host = new HostInput(process.stdin, SANDBOX_WORKSPACE, SANDBOX_CHECK_DIR);
  const task = await host.task;
  // What a container's Env carries on Docker comes over the protocol on Kubernetes (it precedes the task).
  Object.assign(process.env, host.env);
  secrets = task.secretEnv.map((name) => process.env[name] ?? '');

  // The backstop: even if the supervisor is gone, the task ends at its deadline. PID 1 (init) then stops the container.
  const backstop = setTimeout(
    () => {
      endStep();
      emit({ type: 'warning', message: 'task deadline reached inside the sandbox; stopping' });
      emit({ type: 'task.end', status: 'timeout', exitCode: EXIT_DEADLINE });
      process.stdout.write('', () => process.exit(EXIT_DEADLINE));
    },
    Math.min(Math.max(0, taskBudgetMs(task) + BACKSTOP_GRACE_MS), MAX_TIMER_MS),
  );
  backstop.unref();
  await host.workspace;
  if (task.check?.files) {
    await host.checkFiles;
    await makeReadable(SANDBOX_CHECK_DIR);
  }
  // No step runs before the host checked who this runner is (its hello) and said start.
  await host.started;
  if (task.check && !(await checkOut(task.check.checkout))) {
    finish('failed', 1);
    process.stdin.destroy();
    return;
  }

  const endpoint = task.modelGateway ? await startGateway(task.modelGateway, host) : undefined;
  const proxy = task.egress ? await startEgress(task.egress, host) : undefined;

  let status: 'passed' | 'failed' | 'timeout' = 'passed';
  for (const step of task.steps) {
    const outcome = await runStep(task, step);
    // Failing tests are the reason to read reports: copied whatever the step exited with.
    for (const message of await copyStepReports(step)) emit({ type: 'warning', message });
    if (outcome.timedOut) status = 'timeout';
    else if (outcome.exitCode !== 0) status = 'failed';
    // A full engine disk after a step (whatever it exited with) fails whatever runs next, and says nothing of the task.
    const full = status === 'timeout' || outcome.exitCode === EXIT_DISK ? undefined : await engineDiskFull(`after step "${step.name}"`);
    if (full) {
      emit(full);
      status = 'failed';
    }
    if (status !== 'passed') break;
  }
  // Changes come back only from a pipeline that passed: a failed one may have filled the disk, and its
  // commits would never be pushed anyway. git and tar read what steps wrote, so they run as the step user.
  const listed = await collectArtifacts(task, status === 'passed' && !task.check, emit);
  await endStepProcesses();
  // Small artifacts go back on stdout; bigger ones the host copies out of the stopped container.
  if (listed.tar) sendArtifactsTar([listed.tar]);
  else if (listed.complete && listed.bytes + listed.files * TAR_ENTRY_OVERHEAD <= ARTIFACTS_STREAM_MAX_BYTES) await streamArtifacts();
  await endpoint?.close();
  await proxy?.close();
  // An open stdin would keep the runner (and so the container) alive after the last step.
  process.stdin.destroy();
  finish(status, status === 'passed' ? 0 : status === 'timeout' ? EXIT_DEADLINE : 1);
}

/**
 * Resolves when stdin has bytes to read (or ended), reading none of them: HostInput reads them all from the start.
 * Once the 'readable' listener is gone, stdin is neither paused nor flowing, so HostInput's 'data' listener starts it.
 */
function firstInput(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.stdin.off('readable', done);
      process.stdin.off('end', done);
      process.stdin.off('close', done);
      resolve();
    };
    process.stdin.on('readable', done);
    process.stdin.on('end', done);
    process.stdin.on('close', done);
  });
}

/**
 * Sends `.asp/` to the host as a tar in `artifacts.chunk` lines, then `artifacts.end` with its length and digest.
 * A tar that fails or grows past the limit sends no end: the host then copies `.asp/` out itself.
 */
async function streamArtifacts(): Promise<void> {
  // tar reads what steps wrote: as the step user; the runner reads only its stdout.
  const tar = spawn(
    tool('tar'),
    ['-c', '-f', '-', '-C', SANDBOX_WORKSPACE, ...TAR_EXCLUDES, path.relative(SANDBOX_WORKSPACE, SANDBOX_ARTIFACTS_DIR)],
    asStepUser({
      stdio: ['ignore', 'pipe', 'ignore'],
      env: toolEnv(),
    }),
  );
  const sender = artifactsSender();
  const ok = await new Promise<boolean>((resolve) => {
    let bytes = 0;
    tar.on('error', () => resolve(false));
    tar.stdout?.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > ARTIFACTS_STREAM_MAX_BYTES) {
        tar.kill('SIGKILL');
        return;
      }
      sender.push(chunk);
    });
    tar.on('close', (code) => resolve(code === 0 && bytes <= ARTIFACTS_STREAM_MAX_BYTES));
  });
  if (ok) sender.end();
}

/** Sends a tar already in hand (the listing pass kept it) as `artifacts.chunk` lines and its `artifacts.end`. */
function sendArtifactsTar(pieces: Buffer[]): void {
  const sender = artifactsSender();
  for (const piece of pieces) sender.push(piece);
  sender.end();
}

/** Cuts a tar into `artifacts.chunk` lines as it comes; `end` sends the rest and `artifacts.end` (length, digest). */
function artifactsSender(): { push(chunk: Buffer): void; end(): void } {
  const hash = createHash('sha256');
  let bytes = 0;
  let held: Buffer[] = [];
  let heldBytes = 0;
  const send = (all: boolean) => {
    let joined = Buffer.concat(held, heldBytes);
    while (joined.length >= ARTIFACTS_CHUNK_BYTES || (all && joined.length)) {
      const piece = joined.subarray(0, ARTIFACTS_CHUNK_BYTES);
      emit({ type: 'artifacts.chunk', data: piece.toString('base64') });
      joined = joined.subarray(piece.length);
    }
    held = joined.length ? [joined] : [];
    heldBytes = joined.length;
  };
  return {
    push(chunk) {
      bytes += chunk.length;
      hash.update(chunk);
      held.push(chunk);
      heldBytes += chunk.length;
      if (heldBytes >= ARTIFACTS_CHUNK_BYTES) send(false);
    },
    end() {
      send(true);
      emit({ type: 'artifacts.end', bytes, sha256: hash.digest('hex') });
    },
  };
}

/** What the kernel says of the runner's own credentials (HelloMessage.identity); nothing where it says nothing. */
async function ownIdentity(): Promise<{ identity?: RunnerIdentity }> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const field = (name: string) => new RegExp(`^${name}:\\s+(\\S+)`, 'm').exec(status)?.[1];
  const [uid, capEff, seccomp, noNewPrivs] = [field('Uid'), field('CapEff'), field('Seccomp'), field('NoNewPrivs')];
  if (uid === undefined || capEff === undefined || seccomp === undefined) return {};
  return { identity: { uid: Number(uid), capEff, seccomp: Number(seccomp), ...(noNewPrivs !== undefined ? { noNewPrivs: Number(noNewPrivs) } : {}) } };
}

/**
 * The check dir belongs to the runner (root); steps must read all of it and write none of it, whatever modes the
 * files had on the host. chmod -R does not follow the links it meets inside.
 */
function makeReadable(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const chmod = spawn(tool('chmod'), ['-R', 'a+rX,go-w', dir], { stdio: 'ignore', env: toolEnv() });
    chmod.on('error', reject);
    chmod.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`chmod of ${dir} exited ${code}`))));
  });
}

/**
 * A clean-room check starts from the change the host accepted: each repository is switched to its commit, as the
 * step user (git reads the tree). Says which failed and why; false when one did.
 */
async function checkOut(checkouts: NonNullable<SandboxTask['check']>['checkout']): Promise<boolean> {
  for (const target of checkouts) {
    const args = ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', 'checkout', '-q', '-B', target.branch, target.commit];
    const failure = await new Promise<string | undefined>((resolve) => {
      const git = spawn(
        tool('git'),
        args,
        asStepUser({ cwd: target.dir, stdio: ['ignore', 'ignore', 'pipe'], env: toolEnv({ ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' }) }),
      );
      let stderr = '';
      git.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-1000)));
      git.on('error', (error) => resolve(error.message));
      git.on('close', (code) => resolve(code === 0 ? undefined : stderr.trim().split('\n')[0] || `git exited ${code}`));
    });
    if (failure) {
      emit({ type: 'warning', message: `the check cannot start: checking out ${target.commit} in ${target.dir} failed: ${failure}` });
      return false;
    }
  }
  return true;
}

async function startGateway(gateway: NonNullable<SandboxTask['modelGateway']>, host: HostInput): Promise<ModelEndpoint> {
  // Loaded only when the host runs a gateway: a task without a model keeps the runner as small as it was.
  const { startModelEndpoint } = await import('./model-endpoint.js');
  const endpoint = await startModelEndpoint({ port: gateway.port, model: gateway.model, currentStep: () => currentStep, emit, host });
  gatewayEnv = {
    OPENAI_BASE_URL: endpoint.url,
    OPENAI_API_BASE: endpoint.url,
    OPENAI_API_KEY: DUMMY_API_KEY,
    ASP_MODEL_ENDPOINT: endpoint.url,
    ASP_MODEL_NAME: gateway.model,
  };
  return endpoint;
}

async function startEgress(egress: NonNullable<SandboxTask['egress']>, host: HostInput): Promise<EgressProxy> {
  // Loaded only for a task that allows egress, like the model endpoint.
  const { proxyEnv, startEgressProxy } = await import('./egress-proxy.js');
  const proxy = await startEgressProxy({
    port: egress.port,
    currentStep: () => currentStep,
    emit,
    host,
    tell: (text) => emit({ type: 'step.log', step: currentStep, stream: 'stderr', data: `${text}\n` }),
  });
  egressEnv = proxyEnv(proxy.url, process.env);
  return proxy;
}

main().catch(async (error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  emit({ type: 'warning', message: `asp-sandbox failed: ${message}` });
  const full = await engineDiskFull('in the sandbox', message);
  if (full) emit(full);
  process.exitCode = 70;
  process.stdin.destroy();
});
