import { spawn, type ChildProcess } from 'node:child_process';
import type { StandbyNote } from './standby-server.js';

/** After a standby failed to start (or died idle), the pause before the next grows to this. */
const MAX_BACKOFF_MS = 30_000;
/** How long an idle standby told to retire has before it is killed (it holds nothing: no run, no sandbox). */
const RETIRE_MS = 2000;

export interface StandbyKeeper {
  /** Ends the idle standby (one serving a run is its run's, and ends with it). */
  stop(): Promise<void>;
}

/**
 * A pool keeper's standby asp process (standby-server.ts): one is kept waiting while the keeper runs, and after one
 * is claimed the next starts `refillDelayMs` later (so that it does not share the cores with the run that claimed
 * the last). Its output goes where the keeper's does (the pool's log). `ASP_STANDBY=0` in the keeper's environment
 * keeps none.
 */
export function keepStandby(options: { entry: string; log: (line: string) => void; refillDelayMs: number; env?: NodeJS.ProcessEnv }): StandbyKeeper | undefined {
  const env = options.env ?? process.env;
  if (env.ASP_STANDBY === '0') return undefined;
  let stopped = false;
  let idle: ChildProcess | undefined;
  let timer: NodeJS.Timeout | undefined;
  let failures = 0;
  let unable = false;
  const later = (ms: number) => {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(start, ms);
  };
  const start = () => {
    timer = undefined;
    if (stopped) return;
    const child = spawn(process.execPath, [...process.execArgv, options.entry, 'pool', 'standby'], { cwd: '/', env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    idle = child;
    let claimed = false;
    child.on('message', (note: StandbyNote) => {
      if (note.type === 'ready') failures = 0;
      // Another would fail the same way (this build, this directory): none is kept from now on.
      if (note.type === 'unable') unable = true;
      if (note.type !== 'claimed') return;
      claimed = true;
      if (idle === child) idle = undefined;
      // Its run's now: the keeper may end (asp pool down) while it runs, without waiting for it.
      child.unref();
      later(options.refillDelayMs);
    });
    child.on('error', (error) => options.log(`standby: cannot start: ${error.message}`));
    child.on('exit', (code, signal) => {
      if (idle === child) idle = undefined;
      if (claimed || stopped) return;
      if (unable) return options.log(`standby: pid ${child.pid ?? '?'} cannot be one; the pool keeps no standby (runs make their own)`);
      // It ended without serving a run: it failed to start, or was killed; started again, after a pause that grows.
      failures += 1;
      const pauseMs = Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures, 7));
      options.log(`standby: pid ${child.pid ?? '?'} ended idle (${signal ?? `exit ${code}`}); another in ${pauseMs} ms`);
      later(pauseMs);
    });
  };
  start();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      const child = idle;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const ended = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      if (child.connected) child.send({ type: 'retire' });
      const killer = setTimeout(() => child.kill('SIGKILL'), RETIRE_MS);
      await ended;
      clearTimeout(killer);
    },
  };
}
