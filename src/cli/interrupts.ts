import { parseDuration } from '../config/units.js';
import type { Log } from '../core/log.js';

export interface Interrupts {
  /** Aborted by the first SIGINT/SIGTERM: stop the task, copy out, clean up. */
  signal: AbortSignal;
  /** Aborted by the second: skip the copy-out, remove quickly. */
  forceSignal: AbortSignal;
  dispose(): void;
}

/** How long the clean-up after the first signal may take, and after the second, before asp exits anyway. */
export const INTERRUPT_GRACE_MS = 30_000;
export const FORCED_GRACE_MS = 5_000;

/**
 * First Ctrl-C (or SIGTERM) interrupts cleanly, the second forces quick removal, the third exits at once. Whatever
 * the daemon does (a hung one answers nothing), the run ends within a bound of each signal: `graceMs` after the
 * first, FORCED_GRACE_MS after the second; what is left then is the next sweep's or `asp reap`'s.
 */
export function installInterruptHandlers(log: Log, graceMs = interruptGrace()): Interrupts {
  const interrupt = new AbortController();
  const force = new AbortController();
  let count = 0;
  let deadline: NodeJS.Timeout | undefined;
  const exitBy = (ms: number, why: string) => {
    clearTimeout(deadline);
    // Unref'd: a clean-up that finishes first ends the process as it would, the timer never keeps it alive.
    deadline = setTimeout(() => {
      log.error({}, `${why}; exiting now (exit 130): the next asp run, asp batch or asp reap removes what is left`);
      process.exit(130);
    }, ms);
    deadline.unref();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    count += 1;
    if (count === 1) {
      log.warn({ signal }, `${signal}: stopping the task and cleaning up (again to skip the copy-out)`);
      interrupt.abort();
      exitBy(graceMs, `the clean-up did not finish within ${Math.round(graceMs / 1000)} s of ${signal} (is the container engine answering?)`);
    } else if (count === 2) {
      log.warn({ signal }, `${signal}: removing the container now (again to exit at once; asp reap cleans up the rest)`);
      force.abort();
      exitBy(Math.min(FORCED_GRACE_MS, graceMs), `the removal did not finish within ${Math.round(Math.min(FORCED_GRACE_MS, graceMs) / 1000)} s of the second ${signal}`);
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
      clearTimeout(deadline);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** ASP_INTERRUPT_GRACE: the bound after the first signal (default 30 s); a value that is no duration keeps the default. */
function interruptGrace(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.ASP_INTERRUPT_GRACE?.trim();
  const ms = text ? parseDuration(/^\d+$/.test(text) ? `${text}s` : text) : undefined;
  return ms !== undefined && ms >= 1000 ? ms : INTERRUPT_GRACE_MS;
}
