import type { Sandbox, SandboxBackend } from '../backend/sandbox-backend.js';
import type { CleanupScope } from '../core/cleanup-stack.js';
import { liveKeeper, poolKey, readPoolRecord, type PoolShape } from './pool-record.js';

/** Who a claimed sandbox's marker says holds it: the task's ownership labels, and a name unique to its run. */
export interface ClaimInfo {
  labels: Record<string, string>;
  id: string;
}

/** A place warm sandboxes of one shape may be had: asking is cheap, taking (claim) is the Engine API calls. */
export interface WarmOffer {
  /** For the log and the trace: "pool 1a2b…", "batch". */
  from: string;
  /** A started sandbox for the task, its removal on `scope`; undefined when none could be had (all taken). */
  claim(scope: CleanupScope, claim: ClaimInfo): Promise<Sandbox | undefined>;
}

/** Where a task looks for a warm sandbox of its shape before it makes one; undefined: nowhere, make one. */
export type WarmSource = (shape: PoolShape) => Promise<WarmOffer | undefined>;

/**
 * The pools of `asp pool up` under ASP_HOME. A pool is asked only when its record is there and its keeper lives (one
 * file read, no Engine API call when there is none); a claimed sandbox's keeper is told at once (SIGUSR2), so it
 * starts the next in its place.
 */
export function poolSource(home: string, backend: SandboxBackend): WarmSource {
  return async (shape) => {
    const warm = backend.warm;
    if (!warm) return undefined;
    const key = poolKey(shape, warm.fingerprint);
    const record = await readPoolRecord(home, key).catch(() => undefined);
    const keeper = record && new Date(record.expiresAt).getTime() > Date.now() ? liveKeeper(record) : undefined;
    if (!record || !keeper) return undefined;
    const pool = record.id;
    return {
      from: `pool ${key}`,
      claim: async (scope, claim) => {
        const ready = shuffled(await warm.ready(pool).catch(() => []));
        for (const entry of ready) {
          // An engine that cannot take one just now (a rename refused, a full disk): the task makes its own.
          const sandbox = await warm.claim(entry, scope, claim).catch(() => undefined);
          if (!sandbox) continue;
          try {
            process.kill(keeper.pid, 'SIGUSR2');
          } catch {
            // The keeper just ended: its pool ends with it, and this task has its sandbox.
          }
          return sandbox;
        }
        return undefined;
      },
    };
  };
}

/** Several runs claiming at once start at different sandboxes, so fewer of their renames collide. */
function shuffled<T>(items: T[]): T[] {
  return items
    .map((item) => ({ item, order: Math.random() }))
    .sort((a, b) => a.order - b.order)
    .map(({ item }) => item);
}
