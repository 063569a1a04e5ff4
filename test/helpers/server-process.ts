import type { ChildProcess } from 'node:child_process';

/**
 * Waits until a server a test started answers (`ready`), polling every `everyMs`. A server that exits first, or does
 * not answer within `timeoutMs`, is stopped (`stop`: its process and its files) and the error carries its log: a
 * test's set-up never leaves a daemon of its own behind.
 */
export async function waitForServer(
  child: ChildProcess,
  ready: () => Promise<boolean>,
  options: { what: string; timeoutMs: number; everyMs?: number; log: () => string; stop: () => Promise<void> },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      await options.stop();
      throw new Error(`${options.what} exited (${child.exitCode}) before it answered:\n${options.log()}`);
    }
    if (await ready()) return;
    if (Date.now() > deadline) {
      await options.stop();
      throw new Error(`${options.what} did not answer within ${options.timeoutMs / 1000} s:\n${options.log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 200));
  }
}

/** Whether a call succeeds, as a readiness check (`docker.info()` of a daemon that is still starting fails). */
export function succeeds(call: () => Promise<unknown>): Promise<boolean> {
  return call().then(
    () => true,
    () => false,
  );
}
