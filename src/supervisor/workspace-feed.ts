import type { Readable, Writable } from 'node:stream';
import type { Deadline } from '../core/clock.js';
import { encodeHostMessage } from '../protocol/host-messages.js';
import type { SandboxTask } from '../protocol/messages.js';

/**
 * Writes what the runner needs to start on its stdin: the task, then the workspace tar as `workspace.data` frames,
 * then `workspace.end` (host-messages.ts). It waits on backpressure, so a big workspace is never buffered whole.
 * A container that stops meanwhile ends the feed quietly (the session reports how it ended); a failing tar
 * (a file the host cannot read) rejects.
 */
export async function feedSandbox(stdin: Writable, task: SandboxTask, workspaceTar: Readable, checkTar?: Readable): Promise<void> {
  try {
    if (!(await send(stdin, encodeHostMessage({ type: 'task', task })))) return;
    if (!(await sendTar(stdin, workspaceTar, 'workspace.data'))) return;
    if (!(await send(stdin, encodeHostMessage({ type: 'workspace.end' })))) return;
    // A clean-room check's check dir follows the workspace, as its own tar (unpacked by the runner as itself).
    if (checkTar && (await sendTar(stdin, checkTar, 'check.data'))) await send(stdin, encodeHostMessage({ type: 'check.end' }));
  } finally {
    workspaceTar.destroy();
    checkTar?.destroy();
  }
}

/** The task as sent now: with what is left of its deadline, for the runner to count down on its own clock. */
export function withBudget(task: SandboxTask, deadline: Deadline): SandboxTask {
  return { ...task, budgetMs: Math.max(0, Math.round(deadline.remainingMs())) };
}

/** One tar as `*.data` frames; false when stdin closed on the way. */
async function sendTar(stdin: Writable, tar: Readable, type: 'workspace.data' | 'check.data'): Promise<boolean> {
  for await (const chunk of tar as AsyncIterable<Buffer>) {
    if (!chunk.length) continue;
    if (!(await send(stdin, encodeHostMessage({ type, bytes: chunk.length }), chunk))) return false;
  }
  return true;
}

/** Writes the pieces; resolves false when stdin is closed (the container is gone), after a drain when it is full. */
async function send(stdin: Writable, ...pieces: Array<string | Buffer>): Promise<boolean> {
  if (stdin.destroyed || !stdin.writable) return false;
  let full = false;
  for (const piece of pieces) full = !stdin.write(piece) || full;
  if (full) await drained(stdin);
  return !stdin.destroyed && stdin.writable;
}

function drained(stdin: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stdin.off('drain', done);
      stdin.off('close', done);
      stdin.off('error', done);
      resolve();
    };
    stdin.on('drain', done);
    stdin.on('close', done);
    stdin.on('error', done);
  });
}
