import type { Readable, Writable } from 'node:stream';
import { AspError } from '../core/asp-error.js';
import type { Sandbox, SandboxStreams } from '../backend/sandbox-backend.js';
import type { Deadline } from '../core/clock.js';
import { CleanupStack } from '../core/cleanup-stack.js';
import { allowedOnly } from '../backend/sandbox-policy.js';
import { LineSplitter } from '../protocol/line-splitter.js';
import { encodeHostMessage, type HostMessage } from '../protocol/host-messages.js';
import { PROTOCOL_VERSION, type ProtocolMessage, type RunnerIdentity, type TaskEndMessage } from '../protocol/messages.js';
import { parseProtocolLine } from '../protocol/parse.js';
import type { ResolvedStep } from '../config/pipeline.js';

/** Longest protocol line the host accepts; a step's output arrives in chunks far smaller than this. */
const MAX_LINE_BYTES = 1024 * 1024;
/** How long to wait for the output streams to drain after the container stopped. */
const DRAIN_MS = 2000;

export type SessionEnd =
  /**
   * The runner ended the task: by its last word (task.end, with its exit code: the container may still be on its way
   * out, and its removal stops it), or by the sandbox stopping without one.
   */
  | { kind: 'exited'; statusCode: number; taskEnd: TaskEndMessage | undefined; early?: boolean }
  | { kind: 'deadline'; what: string }
  | { kind: 'interrupted' }
  /** The host stopped the task for a reason of its own (a model budget spent). */
  | { kind: 'stopped'; what: string };

/** Times one of the session's own phases for the trace (`sandbox-start`, `runner-boot`). */
export type TimePhase = <T>(name: string, action: () => Promise<T>) => Promise<T>;

/** A sandbox opened ahead of its session (openSandbox), which runSession takes over. */
export interface OpenedSandbox {
  streams: SandboxStreams;
  /** Ends the `runner-boot` phase: at the runner's hello, or when the session ends without one. */
  helloArrived: () => void;
}

/**
 * Connects the sandbox's streams and starts it (`sandbox-start`), then times its runner's boot until the hello that
 * the session reads (`runner-boot`). A task opens its sandbox as soon as it exists, beside the clone: the runner boots
 * while the workspace is made ready, and waits on stdin for it. Nothing it writes before the session reads it is lost:
 * the streams hold it.
 */
export async function openSandbox(sandbox: Sandbox, signal: AbortSignal | undefined, timePhase: TimePhase = (_name, action) => action()): Promise<OpenedSandbox> {
  const streams = await timePhase('sandbox-start', () => sandbox.open(signal));
  let helloArrived!: () => void;
  // trace.phase calls its action at once: helloArrived is set when this returns.
  void timePhase('runner-boot', () => new Promise<void>((resolve) => (helloArrived = resolve)));
  return { streams, helloArrived };
}

/** How long the removal of a sandbox whose session never began waits for its start to answer. */
const START_SETTLE_MS = 5000;

/**
 * Closes a sandbox opened early whose session never began (the clone failed), before its removal: once its start
 * answered, so that the removal never meets a start in flight, and at most START_SETTLE_MS later, so that a start that
 * never answers cannot hold the removal back. A session that ran closed it already (closing twice is nothing).
 */
export async function closeUnused(opening: Promise<OpenedSandbox>): Promise<void> {
  const opened = await Promise.race([opening.catch(() => undefined), delay(START_SETTLE_MS).then(() => undefined)]);
  if (opened) closeOpened(opened);
}

/** Ends what openSandbox opened: its streams, its `runner-boot` phase. */
function closeOpened(opened: OpenedSandbox): void {
  opened.helloArrived();
  opened.streams.stdout.destroy();
  opened.streams.stderr.destroy();
  opened.streams.stdin.destroy();
}

/** Sends a host → sandbox message on the container's stdin; a no-op when stdin is already closed. */
export type HostReply = (message: HostMessage) => void;

export interface SessionHooks {
  onMessage(message: ProtocolMessage, reply: HostReply): void;
  onWarning(message: string): void;
  /** Raw stderr of the runner itself (not of steps): only a crashed runner writes there. */
  onRunnerStderr(text: string): void;
  /** The sandbox's stdin, once open: for what writes on it besides replies (the egress relay's raw frames). */
  onStdin?(stdin: Writable): void;
}

/**
 * Runs a created sandbox to its end: open its streams (stdin too) and start it, feed it its task and workspace, read
 * the protocol, enforce the task and step deadlines by killing the sandbox (not just abandoning the wait), and stop
 * early when `signal` aborts. A feed that fails stops the sandbox and throws. Its timers, listeners and streams go
 * on a stack of its own, undone when the session ends, whichever way.
 */
export async function runSession(
  sandbox: Sandbox,
  options: {
    steps: ResolvedStep[];
    taskTimeoutMs: number;
    /** The task's, on the monotonic clock: the session stops the sandbox when it passes. */
    deadline: Deadline;
    signal?: AbortSignal | undefined;
    /** Writes what the runner reads first on stdin (the task and the workspace); runs once the container started. */
    feed: (stdin: Writable) => Promise<void>;
    /** Resolves with a reason when the host wants the task stopped (its container is killed, like at a deadline). */
    stop?: Promise<string> | undefined;
    /** The variables the user let in (`--env`), for a sandbox that takes them over the protocol (`envOverProtocol`). */
    env?: Record<string, string> | undefined;
    /** Checks the runner's identity from its hello; a reason stops the sandbox with HARDENING_IGNORED (exit 3). */
    verifyIdentity?: ((identity: RunnerIdentity | undefined) => string | undefined) | undefined;
    /**
     * Times the session's own phases for the trace: `sandbox-start` (streams connected, the sandbox started) and
     * `runner-boot` (from then until the runner's hello, or the session's end without one).
     */
    timePhase?: TimePhase | undefined;
    /** The sandbox opened already (openSandbox, with the same timePhase); else the session opens it. */
    opened?: Promise<OpenedSandbox> | undefined;
  },
  hooks: SessionHooks,
): Promise<SessionEnd> {
  await using session = new CleanupStack();
  const timePhase = options.timePhase ?? ((_name, action) => action());
  let opened: OpenedSandbox;
  try {
    opened = await (options.opened ?? openSandbox(sandbox, options.signal, timePhase));
  } catch (error) {
    // Interrupted while the sandbox was still starting (a pod waiting for a node or its image): nothing ran.
    if (options.signal?.aborted) return { kind: 'interrupted' };
    throw error;
  }
  const { streams, helloArrived } = opened;
  // The phase openSandbox began is never left open: it ends at the hello, or with the session.
  session.defer('streams', () => closeOpened(opened));
  const stdin = streams.stdin;
  // A container that is gone makes writes fail: that is the end of the session, not an error of the host.
  stdin.on('error', () => {});
  hooks.onStdin?.(stdin);
  const reply: HostReply = (message) => {
    if (!stdin.destroyed && stdin.writable) stdin.write(encodeHostMessage(message));
  };
  let taskEnd: TaskEndMessage | undefined;
  let helloSeen = false;
  let stepTimer: NodeJS.Timeout | undefined;
  session.defer('step timer', () => clearTimeout(stepTimer));
  let resolveStop!: (end: SessionEnd) => void;
  /** Set from the callbacks below; read once the session ended. */
  const failed: { feed?: { error: unknown }; identity?: AspError } = {};
  let markVerified!: () => void;
  /** Settles when the runner's hello said who it is and that was right (or nobody asked). */
  const verified = new Promise<void>((resolve) => (markVerified = resolve));
  const startFeed = () => {
    // A sandbox whose spec does not hold the --env values gets them first, before the task (host-messages.ts).
    if (sandbox.envOverProtocol && options.env) reply({ type: 'env', env: allowedOnly(options.env) });
    // The task and the workspace go in at once (the runner's boot and the transfer overlap); `start`, which lets
    // the runner run steps, only once its hello checked out. It follows the feed's last frame on stdin.
    options
      .feed(stdin)
      .then(() => verified)
      // Not once the session is ending (a deadline, an interrupt): the kill is on its way, no step may start before it.
      .then(() => {
        if (!stopping) reply({ type: 'start' });
      })
      .catch((error: unknown) => {
        failed.feed = { error };
        resolveStop({ kind: 'stopped', what: 'the workspace could not be sent' });
      });
  };
  let stopping = false;
  const stopped = new Promise<SessionEnd>((resolve) => {
    resolveStop = (end) => {
      stopping = true;
      resolve(end);
    };
  });
  const stepTimeouts = new Map(options.steps.map((step) => [step.name, step.timeoutMs]));

  let reportEnd!: (end: SessionEnd) => void;
  const reported = new Promise<SessionEnd>((resolve) => (reportEnd = resolve));

  const handle = (message: ProtocolMessage) => {
    if (message.type === 'hello') {
      helloSeen = true;
      helloArrived();
      if (message.protocolVersion !== PROTOCOL_VERSION) {
        hooks.onWarning(`sandbox speaks protocol ${message.protocolVersion}, asp speaks ${PROTOCOL_VERSION}`);
      }
      const wrong = options.verifyIdentity?.(message.identity);
      if (wrong) {
        failed.identity = new AspError(
          'HARDENING_IGNORED',
          `${wrong}: the container engine did not apply the hardening asp asked for, and the sandbox was stopped before any step`,
          'use a Docker Engine (20.10 or later) that applies User, CapAdd/CapDrop, SecurityOpt; leave out --runtime if it names one that does not',
        );
        resolveStop({ kind: 'stopped', what: wrong });
      } else markVerified();
    } else if (!helloSeen) {
      hooks.onWarning(`protocol event ${message.type} before hello`);
    }
    if (message.type === 'step.start') {
      clearTimeout(stepTimer);
      // The host's own deadline for the step (from the spec, not from what the sandbox claims).
      const timeoutMs = stepTimeouts.get(message.step) ?? options.taskTimeoutMs;
      stepTimer = setTimeout(() => resolveStop({ kind: 'deadline', what: `step "${message.step}" passed its ${timeoutMs} ms deadline` }), clampTimer(timeoutMs));
    } else if (message.type === 'step.end') {
      clearTimeout(stepTimer);
    } else if (message.type === 'task.end') {
      taskEnd = message;
    }
    hooks.onMessage(message, reply);
    // task.end is the runner's last line (its artifacts came before it): the task is over without waiting ~50 ms for
    // the engine to see the container out; its removal (forced) stops what is left of it.
    if (message.type === 'task.end' && sandbox.endsAtTaskEnd) reportEnd({ kind: 'exited', statusCode: message.exitCode, taskEnd: message, early: true });
  };

  const stdoutDone = pump(
    streams.stdout,
    (line) => {
      const parsed = parseProtocolLine(line);
      if (parsed.kind === 'message') handle(parsed.message);
      else hooks.onWarning(`ignored a protocol line (${parsed.reason}): ${parsed.line}`);
    },
    (dropped) => hooks.onWarning(`ignored a protocol line of ${dropped} bytes (over ${MAX_LINE_BYTES})`),
  );
  /** The runner's last line on stderr: what a runner that never started says of why (tini's exec error, a loader's). */
  let lastStderr = '';
  const stderrDone = pump(
    streams.stderr,
    (line) => {
      if (line.trim()) lastStderr = line.trim().slice(0, 300);
      hooks.onRunnerStderr(line);
    },
    () => {},
  );

  // The task deadline counts from the start of the task (clone and all), not from the container start.
  const taskDeadline = () => resolveStop({ kind: 'deadline', what: `the task passed its ${options.taskTimeoutMs} ms deadline` });
  const leftMs = options.deadline.remainingMs();
  const taskTimer = setTimeout(taskDeadline, clampTimer(Math.max(0, leftMs)));
  session.defer('task timer', () => clearTimeout(taskTimer));
  // Spent before the session began (the clone or the image took it all): stopped now, not after the feed raced the timer.
  if (leftMs <= 0) taskDeadline();
  const onAbort = () => resolveStop({ kind: 'interrupted' });
  options.signal?.addEventListener('abort', onAbort, { once: true });
  session.defer('interrupt listener', () => options.signal?.removeEventListener('abort', onAbort));
  if (options.signal?.aborted) onAbort();
  void options.stop?.then((what) => resolveStop({ kind: 'stopped', what }));

  startFeed();
  const waited = sandbox.wait().then(async (statusCode): Promise<SessionEnd> => {
    // The streams end when the container stops; give the last protocol lines a moment to arrive.
    await Promise.race([Promise.all([stdoutDone, stderrDone]), delay(DRAIN_MS)]);
    return { kind: 'exited', statusCode, taskEnd };
  });
  const end = await Promise.race([waited, stopped, reported]);
  if (end.kind !== 'exited') {
    // A deadline or an interrupt stops the container itself, every process in it, not just our wait.
    await sandbox.kill();
    await Promise.race([waited.catch(() => undefined), delay(DRAIN_MS)]);
  }
  if (failed.identity) throw failed.identity;
  if (failed.feed) throw failed.feed.error;
  if (end.kind === 'exited' && !helloSeen && end.statusCode !== 0) {
    throw new AspError(
      'PROTOCOL_MISMATCH',
      `the sandbox exited with ${end.statusCode} before saying hello${lastStderr ? `: ${lastStderr}` : ''}`,
      "the runner did not start: `asp doctor` checks the image and the runtime volume; an image built on asp's needs `asp image build` after an upgrade",
    );
  }
  return end;
}

/** How long a runner that said its last word (task.end) is given to be out of its sandbox before the copy-out. */
const STOP_WAIT_MS = 5000;

/**
 * `.asp/` is copied out of a stopped sandbox. The session ends at the runner's task.end, a moment before its container
 * does: waited for that moment (bounded), then stopped for sure; one stopped already answers both at once.
 */
export async function untilStopped(sandbox: Sandbox): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([
    sandbox.wait().then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), STOP_WAIT_MS).unref())),
  ]);
  clearTimeout(timer);
  // Removal stops it in any case; the copy-out then says what it could not read.
  if (!stopped) await sandbox.kill().catch(() => {});
}

function pump(stream: Readable, onLine: (line: string) => void, onOverflow: (dropped: number) => void): Promise<void> {
  const splitter = new LineSplitter(MAX_LINE_BYTES, onLine, onOverflow);
  return new Promise((resolve) => {
    stream.on('data', (chunk: Buffer) => splitter.push(chunk));
    const done = () => {
      splitter.end();
      resolve();
    };
    stream.on('end', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** setTimeout fires at once past 2^31-1 ms. */
function clampTimer(ms: number): number {
  return Math.min(ms, 2 ** 31 - 1);
}
