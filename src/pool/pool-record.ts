import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Limits } from '../config/task-spec.js';
import { systemErrorCode } from '../core/asp-error.js';
import { writeFileAtomically } from '../core/atomic-write.js';
import { EXPIRY_GRACE_MS, LABEL, ownershipLabels, parseSupervisor, supervisorState, type SupervisorIdentity } from '../backend/ownership-labels.js';

/**
 * A warm pool (`asp pool up`): N sandboxes of one image and one set of limits kept started by a keeper process until
 * its TTL ends. What the pool is lives in one record under ASP_HOME (`pools/<key>.json`); the sandboxes carry the
 * pool's key and the keeper's ownership labels, so a dead keeper's sandboxes are reaped like any dead run's.
 */

/** What a sandbox is made with, of a task's limits: the rest (timeout, disk, output cap) goes with the task itself. */
export interface PoolShape {
  /** The image's ref, and its content id when the engine says (a re-tagged image is another pool). */
  image: string;
  imageId: string | undefined;
  limits: Pick<Limits, 'memory' | 'cpus' | 'pids' | 'tmpfs'>;
  runtime: string | undefined;
}

/**
 * The pool's key: one per image, limits and runtime, and per asp (the backend's fingerprint of its sandbox spec); a
 * run claims only from the pool of its own key.
 */
export function poolKey(shape: PoolShape, fingerprint: string): string {
  const { memory, cpus, pids, tmpfs } = shape.limits;
  const canonical = JSON.stringify([shape.imageId ?? shape.image, memory, cpus, pids, tmpfs, shape.runtime ?? null, fingerprint]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 12);
}

/** What a pool key looks like (poolKey): 12 hex digits. */
export const POOL_KEY = /^[0-9a-f]{12}$/;

const recordSchema = z.object({
  key: z.string().regex(POOL_KEY),
  /** This pool's own id (its sandboxes' `asp.pool` label): two pools of one key (two ASP_HOMEs, two hosts on one engine) never count or take each other's. */
  id: z.string().regex(/^[0-9a-f]{12}-[0-9a-f]{8}$/),
  image: z.string(),
  imageId: z.string().nullable(),
  limits: z.object({ memory: z.number(), cpus: z.number(), pids: z.number(), tmpfs: z.number() }),
  runtime: z.string().nullable(),
  size: z.number().int().min(1),
  ttlMs: z.number().int().min(1),
  expiresAt: z.string(),
  createdAt: z.string(),
  /** The keeper process ("host/pid/start ticks"), once it runs. */
  keeper: z.string().nullable(),
});

export type PoolRecord = z.infer<typeof recordSchema>;

export function poolsDir(home: string): string {
  return path.join(home, 'pools');
}

function recordPath(home: string, key: string): string {
  return path.join(poolsDir(home), `${key}.json`);
}

export async function readPoolRecord(home: string, key: string): Promise<PoolRecord | undefined> {
  const text = await readFile(recordPath(home, key), 'utf8').catch((error: unknown) => {
    if (systemErrorCode(error) === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  try {
    const parsed = recordSchema.safeParse(JSON.parse(text));
    return parsed.success && parsed.data.key === key ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export async function writePoolRecord(home: string, record: PoolRecord): Promise<void> {
  await writeFileAtomically(recordPath(home, record.key), JSON.stringify(recordSchema.parse(record), null, 2) + '\n', { makeDir: true });
}

export async function removePoolRecord(home: string, key: string): Promise<void> {
  await rm(recordPath(home, key), { force: true });
}

/** Every pool record under ASP_HOME (a damaged one is left out). */
export async function listPoolRecords(home: string): Promise<PoolRecord[]> {
  const names = await readdir(poolsDir(home)).catch(() => []);
  const keys = names.flatMap((name) => /^([0-9a-f]{12})\.json$/.exec(name)?.[1] ?? []);
  const records = await Promise.all(keys.map((key) => readPoolRecord(home, key)));
  return records.filter((record): record is PoolRecord => record !== undefined);
}

/** The keeper's identity, when it runs on this host and lives. */
export function liveKeeper(record: PoolRecord): SupervisorIdentity | undefined {
  const keeper = parseSupervisor(record.keeper ?? undefined);
  return keeper && supervisorState(keeper) === 'alive' ? keeper : undefined;
}

/** The labels of one of the pool's sandboxes: the keeper owns it, it expires with the pool (and the grace). */
export function poolSandboxLabels(record: PoolRecord, keeper: SupervisorIdentity, seq: string): Record<string, string> {
  const expiresAt = new Date(new Date(record.expiresAt).getTime() + EXPIRY_GRACE_MS);
  return { ...ownershipLabels({ taskId: 'pool', runId: seq, supervisor: keeper, expiresAt, keep: false }), [LABEL.pool]: record.id };
}

/** A new sandbox's seq: its pool's key and a random part (names must be unique on the engine). */
export function newSeq(key: string): string {
  return `${key}-${randomBytes(4).toString('hex')}`;
}

/** A new pool's id, for its label. */
export function newPoolId(key: string): string {
  return `${key}-${randomBytes(4).toString('hex')}`;
}
