import { limitsSchema } from '../config/task-spec.js';
import { errorMessage } from '../core/asp-error.js';
import type { Clock } from '../core/clock.js';
import { currentSupervisor, formatSupervisor } from '../backend/ownership-labels.js';
import type { SandboxBackend, WarmSandboxes } from '../backend/sandbox-backend.js';
import { liveKeeper, newSeq, poolSandboxLabels, readPoolRecord, removePoolRecord, writePoolRecord, type PoolRecord } from './pool-record.js';

/** How often the keeper looks without being told (a claim tells it at once, by SIGUSR2). */
const LOOK_EVERY_MS = 5000;
/**
 * How long after a claim the keeper makes the next: the claiming task's own start is not slowed by a create beside
 * it (on a small machine they share the cores), and the rest of the pool serves the claims meanwhile.
 */
export const REFILL_DELAY_MS = 750;
/** After a failed make, the pause before the next try grows to this (the engine restarting, its disk full). */
const MAX_BACKOFF_MS = 30_000;

export interface KeeperDeps {
  backend: SandboxBackend;
  home: string;
  clock: Clock;
  /** One line to the pool's log. */
  log: (line: string) => void;
  /** Aborted by `asp pool down` (SIGTERM) or an interrupt: the keeper retires what is ready and ends. */
  signal: AbortSignal;
  /** Ends the current wait (after REFILL_DELAY_MS): a claim took a sandbox, or `asp pool up` changed the record. */
  nudges: { on(listener: () => void): void };
  refillDelayMs?: number | undefined;
  /** Keeps a standby asp process waiting beside the sandboxes (src/cli/standby-keeper.ts), while the keeper runs. */
  standby?: ((refillDelayMs: number) => { stop(): Promise<void> } | undefined) | undefined;
}

/**
 * The keeper of one pool, a process of its own (`asp pool keep`, started by `asp pool up`): it keeps the pool's
 * size of sandboxes ready, one make at a time, until the pool's TTL ends, its record goes (`asp pool down`) or
 * another keeper's identity is in it, then retires every ready sandbox and ends. Sandboxes claimed by tasks are
 * theirs: the keeper never touches one. The keeper owns the ready ones (its identity is on their labels): killed,
 * it leaves them to the next sweep, as any dead run's.
 */
export async function keepPool(key: string, deps: KeeperDeps): Promise<void> {
  const { backend, home, clock, log, signal } = deps;
  const warm = backend.warm;
  if (!warm) throw new Error(`the ${backend.name} backend has no warm sandboxes`);
  const me = currentSupervisor();
  const found = await readPoolRecord(home, key);
  if (!found) return log(`pool ${key}: no record, nothing to keep`);
  const other = liveKeeper(found);
  if (found.keeper !== null && other && other.pid !== me.pid) return log(`pool ${key}: kept already by pid ${other.pid}; ending`);
  // Its name in the record is what makes it the keeper: `asp pool up` waits for it, a second keeper ends on it.
  const first = { ...found, keeper: formatSupervisor(me) };
  await writePoolRecord(home, first);
  const image = await backend.prepareImage({ image: first.image, onProgress: () => {} });
  // The tag moved since `asp pool up` (another image under it): runs of the new one would never claim these.
  if (first.imageId && image.id && image.id !== first.imageId) return log(`pool ${key}: ${first.image} is ${image.id} now, not ${first.imageId}: run asp pool up again; ending`);
  let wake: (() => void) | undefined;
  let refill: NodeJS.Timeout | undefined;
  deps.nudges.on(() => {
    refill ??= setTimeout(() => {
      refill = undefined;
      wake?.();
    }, deps.refillDelayMs ?? REFILL_DELAY_MS);
  });
  signal.addEventListener('abort', () => wake?.(), { once: true });
  let failures = 0;
  log(`pool ${key}: keeping ${first.size} sandbox(es) of ${first.image} until ${first.expiresAt}`);
  const standby = deps.standby?.(deps.refillDelayMs ?? REFILL_DELAY_MS);
  let ours = true;
  while (!signal.aborted) {
    const record = await readPoolRecord(home, key);
    if (!record || record.keeper !== formatSupervisor(me)) {
      ours = false;
      log(`pool ${key}: ${record ? 'another keeper took the pool over' : 'the record is gone (asp pool down)'}; ending`);
      break;
    }
    const leftMs = new Date(record.expiresAt).getTime() - clock.now().getTime();
    if (leftMs <= 0) {
      log(`pool ${key}: its TTL ended; ending`);
      break;
    }
    let pauseMs = Math.min(LOOK_EVERY_MS, leftMs);
    try {
      const idle = await warm.idle(record.id);
      // Stopped under it (the engine restarted): of no use to a task, so retired, and made again.
      for (const stopped of idle.filter((entry) => !entry.running)) await warm.retire(stopped);
      const ready = idle.filter((entry) => entry.running);
      if (ready.length < record.size) {
        await makeOne(warm, record, me);
        failures = 0;
        continue;
      }
      for (const extra of ready.slice(record.size)) await warm.retire(extra);
    } catch (error) {
      failures += 1;
      pauseMs = Math.min(leftMs, MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures, 7));
      log(`pool ${key}: ${errorMessage(error)} (try ${failures}; again in ${pauseMs} ms)`);
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, pauseMs);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  clearTimeout(refill);
  await standby?.stop();
  const retired = await retireAll(warm, first.id, log);
  // Not a record `asp pool up` renewed meanwhile (it names this keeper and a later expiry): that up starts another keeper.
  const last = await readPoolRecord(home, key);
  if (ours && last?.keeper === formatSupervisor(me) && (signal.aborted || new Date(last.expiresAt).getTime() <= clock.now().getTime())) await removePoolRecord(home, key);
  log(`pool ${key}: retired ${retired} ready sandbox(es); ended`);
}

async function makeOne(warm: WarmSandboxes, record: PoolRecord, keeper: ReturnType<typeof currentSupervisor>): Promise<void> {
  const seq = newSeq(record.key);
  await warm.prepare({
    image: record.image,
    limits: { ...limitsSchema.parse({}), ...record.limits },
    runtime: record.runtime ?? undefined,
    labels: poolSandboxLabels(record, keeper, seq),
    seq,
  });
}

/** Retires every ready sandbox of the pool (a claimed one is its task's); how many went. */
export async function retireAll(warm: WarmSandboxes, pool: string, log: (line: string) => void): Promise<number> {
  let retired = 0;
  const idle = await warm.idle(pool).catch((error: unknown) => {
    log(`pool ${pool}: cannot list its sandboxes: ${errorMessage(error)} (asp reap removes them once the keeper is gone)`);
    return [];
  });
  for (const entry of idle) {
    const gone = await warm.retire(entry).catch((error: unknown) => {
      log(`pool ${pool}: cannot remove ${entry.seq}: ${errorMessage(error)}`);
      return false;
    });
    if (gone) retired += 1;
  }
  return retired;
}
