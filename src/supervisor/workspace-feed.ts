import type { Readable, Writable } from 'node:stream';
import { encodeHostMessage } from '../protocol/host-messages.js';
import type { SandboxTask } from '../protocol/messages.js';

/**
 * Writes what the runner needs to start on its stdin: the task, then the workspace tar as `workspace.data` frames,
 * then `workspace.end` (host-messages.ts). It waits on backpressure, so a big workspace is never buffered whole.
 * A container that stops meanwhile ends the feed quietly (the session reports how it ended); a failing tar
 * (a file the host cannot read) rejects.
 */
export async function feedSandbox(stdin: Writable, task: SandboxTask, workspaceTar: Readable): Promise<void> {
  try {
    if (!(await send(stdin, encodeHostMessage({ type: 'task', task })))) return;
    for await (const chunk of workspaceTar as AsyncIterable<Buffer>) {
      if (!chunk.length) continue;
      if (!(await send(stdin, encodeHostMessage({ type: 'workspace.data', bytes: chunk.length }), chunk))) return;
    }
    await send(stdin, encodeHostMessage({ type: 'workspace.end' }));
  } finally {
    workspaceTar.destroy();
  }
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
