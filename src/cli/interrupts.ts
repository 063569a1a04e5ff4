import type { Log } from '../core/log.js';

export interface Interrupts {
  /** Aborted by the first SIGINT/SIGTERM: stop the task, copy out, clean up. */
  signal: AbortSignal;
  /** Aborted by the second: skip the copy-out, remove quickly. */
  forceSignal: AbortSignal;
  dispose(): void;
}

/** First Ctrl-C (or SIGTERM) interrupts cleanly, the second forces quick removal, the third exits at once. */
export function installInterruptHandlers(log: Log): Interrupts {
  const interrupt = new AbortController();
  const force = new AbortController();
  let count = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    count += 1;
    if (count === 1) {
      log.warn({ signal }, `${signal}: stopping the task and cleaning up (again to skip the copy-out)`);
      interrupt.abort();
    } else if (count === 2) {
      log.warn({ signal }, `${signal}: removing the container now (again to exit at once; asp reap cleans up the rest)`);
      force.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: interrupt.signal,
    forceSignal: force.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
