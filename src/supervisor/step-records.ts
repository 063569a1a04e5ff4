import { lstat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../core/asp-error.js';
import type { ProtocolMessage, StepEndMessage } from '../protocol/messages.js';
import type { Clock } from '../core/clock.js';

/** As much of a step's output as the runner keeps in its `<step>.json` (sandbox/main.ts). */
const TAIL_BYTES = 4096;

/** `.asp/<step>.json`, as the runner writes it for every step it saw to its end, and as the host writes it otherwise. */
export interface StepRecord {
  name: string;
  command: string;
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number;
  startedAt: string;
  endedAt: string;
  outputBytes: number;
  droppedBytes: number;
  reason?: string;
  outputTail: string;
  /** Set when the host wrote it, from the protocol, because the sandbox could not (the step was killed under it). */
  writtenBy?: 'host';
}

interface Tracked {
  command: string;
  startedAt: Date;
  tail: Buffer;
  outputBytes: number;
  end?: StepEndMessage & { endedAt: Date };
  /** When and why its sandbox stopped while the step had not ended (a task has two sandboxes with a check). */
  stopped?: { at: Date; why: string };
}

/**
 * What the host saw of each step on the protocol (already masked): when it started, its output's tail, how it
 * ended. A step killed at a deadline, by the disk watchdog or with its container never gets to write its
 * `.asp/<step>.json`; this is what the host writes in its place, and where its duration comes from.
 */
export class StepTracker {
  private readonly steps = new Map<string, Tracked>();

  constructor(private readonly clock: Clock) {}

  onMessage(message: ProtocolMessage): void {
    if (message.type === 'step.start') {
      this.steps.set(message.step, { command: message.run, startedAt: this.clock.now(), tail: Buffer.alloc(0), outputBytes: 0 });
      return;
    }
    const step = 'step' in message && typeof message.step === 'string' ? this.steps.get(message.step) : undefined;
    if (!step || step.end) return;
    if (message.type === 'step.log') {
      const bytes = Buffer.from(message.data, 'utf8');
      step.outputBytes += bytes.length;
      step.tail = Buffer.concat([step.tail, bytes]).subarray(-TAIL_BYTES);
    } else if (message.type === 'step.end') step.end = { ...message, endedAt: this.clock.now() };
  }

  /**
   * A sandbox stopped (or was stopped) at `at` because of `why`: the steps still open ended there. Each step keeps
   * the first stop it saw, so a later sandbox's (the clean-room check's) stop speaks for its own steps only.
   */
  stop(at: Date, why: string): void {
    for (const step of this.steps.values()) if (!step.end) step.stopped ??= { at, why };
  }

  /** How long a step ran: its own word when it ended, else until the sandbox stopped; null when it never started. */
  durationMs(name: string): number | null {
    const step = this.steps.get(name);
    if (!step) return null;
    if (step.end) return step.end.durationMs;
    return Math.max(0, (step.stopped?.at ?? this.clock.now()).getTime() - step.startedAt.getTime());
  }

  /** The record of a started step, as the host saw it; `exitCode` is the status the task result gives it. */
  record(name: string, exitCode: number | null): StepRecord | undefined {
    const step = this.steps.get(name);
    if (!step) return undefined;
    const durationMs = this.durationMs(name) ?? 0;
    const reason = step.end ? step.end.reason : (step.stopped?.why ?? 'the task ended before the step did');
    return {
      name,
      command: step.command,
      exitCode: step.end?.exitCode ?? exitCode,
      timedOut: step.end ? (step.end.timedOut ?? false) : /deadline/.test(reason ?? ''),
      durationMs,
      startedAt: step.startedAt.toISOString(),
      endedAt: new Date(step.startedAt.getTime() + durationMs).toISOString(),
      outputBytes: step.outputBytes,
      droppedBytes: step.end?.droppedBytes ?? 0,
      ...(reason ? { reason } : {}),
      // The tail may start inside a UTF-8 sequence: the decoder shows that as a replacement character.
      outputTail: step.tail.toString('utf8'),
      writtenBy: 'host',
    };
  }
}

/**
 * Writes `.asp/<step>.json` for every step that started but has none after the copy-out (the sandbox was killed
 * before it could write it). Never over a file that came out of the sandbox: that one is the step's own.
 */
export async function writeMissingStepRecords(
  artifactsDir: string,
  tracker: StepTracker,
  steps: Array<{ name: string; exitCode: number | null }>,
  warn: (message: string) => void,
  /** How the protocol names a step, when not as its file (the check's steps are `check:<name>` there). */
  trackedAs: (name: string) => string = (name) => name,
): Promise<string[]> {
  const written: string[] = [];
  for (const step of steps) {
    const record = tracker.record(trackedAs(step.name), step.exitCode);
    if (!record) continue;
    const file = path.join(artifactsDir, `${step.name}.json`);
    if (
      await lstat(file).then(
        () => true,
        () => false,
      )
    )
      continue;
    try {
      await writeFile(file, JSON.stringify({ ...record, name: step.name }, null, 2) + '\n', { flag: 'wx' });
      written.push(`${step.name}.json`);
    } catch (error) {
      warn(`.asp/${step.name}.json not written: ${errorMessage(error)}`);
    }
  }
  return written;
}
