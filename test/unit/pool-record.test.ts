import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { limitsSchema } from '../../src/config/task-spec.js';
import { listPoolRecords, poolKey, poolSandboxLabels, readPoolRecord, writePoolRecord, type PoolRecord } from '../../src/pool/pool-record.js';
import { EXPIRY_GRACE_MS, LABEL, parseOwnership } from '../../src/backend/ownership-labels.js';

const limits = limitsSchema.parse({});
const shape = { image: 'asp-sandbox:1', imageId: 'sha256:aaa', limits, runtime: undefined };

describe('a pool key', () => {
  it('is the same for the same image, limits and runtime, whatever the per-task limits say', () => {
    expect(poolKey(shape, 'fp')).toMatch(/^[0-9a-f]{12}$/);
    const perTask = { ...limits, timeout: 5000, disk: 2 * 1024 ** 2 };
    expect(poolKey({ ...shape, limits: perTask }, 'fp')).toBe(poolKey(shape, 'fp'));
  });

  it('differs when what the engine fixes at creation differs', () => {
    const keys = new Set([
      poolKey(shape, 'fp'),
      poolKey({ ...shape, imageId: 'sha256:bbb' }, 'fp'),
      poolKey({ ...shape, limits: { ...limits, memory: limits.memory / 2 } }, 'fp'),
      poolKey({ ...shape, limits: { ...limits, cpus: 2 } }, 'fp'),
      poolKey({ ...shape, limits: { ...limits, pids: 64 } }, 'fp'),
      poolKey({ ...shape, limits: { ...limits, tmpfs: 1024 ** 2 } }, 'fp'),
      poolKey({ ...shape, runtime: 'runsc' }, 'fp'),
    ]);
    expect(keys.size).toBe(7);
    // Another asp's sandbox spec (an upgrade since asp pool up) is another pool.
    expect(poolKey(shape, 'other asp')).not.toBe(poolKey(shape, 'fp'));
  });
});

describe('a pool record', () => {
  const record = (_home: string): PoolRecord => ({
    key: poolKey(shape, 'fp'),
    id: `${poolKey(shape, 'fp')}-0a1b2c3d`,
    image: shape.image,
    imageId: shape.imageId,
    limits: { memory: limits.memory, cpus: limits.cpus, pids: limits.pids, tmpfs: limits.tmpfs },
    runtime: null,
    size: 2,
    ttlMs: 600_000,
    expiresAt: '2026-12-02T02:00:00.000Z',
    createdAt: '2026-12-02T01:50:00.000Z',
    keeper: `${os.hostname()}/1/2`,
  });

  it('is read back as written, and a damaged or misnamed one is no pool', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'asp-pool-record-'));
    await writePoolRecord(home, record(home));
    expect(await readPoolRecord(home, poolKey(shape, 'fp'))).toEqual(record(home));
    mkdirSync(path.join(home, 'pools'), { recursive: true });
    writeFileSync(path.join(home, 'pools', '0123456789ab.json'), '{"key": "0123456789ab", "size": "two"');
    writeFileSync(path.join(home, 'pools', 'ffffffffffff.json'), JSON.stringify({ ...record(home), key: '000000000000' }));
    expect(await readPoolRecord(home, '0123456789ab')).toBeUndefined();
    expect(await readPoolRecord(home, 'ffffffffffff')).toBeUndefined();
    expect((await listPoolRecords(home)).map((found) => found.key)).toEqual([poolKey(shape, 'fp')]);
    expect(await listPoolRecords(path.join(home, 'nowhere'))).toEqual([]);
  });

  it("labels the pool's sandboxes as the keeper's, expiring with the pool and the grace", () => {
    const labels = poolSandboxLabels(record('/tmp'), { host: 'here', pid: 7, startTicks: 9 }, 'k-1');
    expect(labels[LABEL.pool]).toBe(`${poolKey(shape, 'fp')}-0a1b2c3d`);
    expect(parseOwnership(labels)).toMatchObject({ taskId: 'pool', runId: 'k-1', supervisor: { host: 'here', pid: 7, startTicks: 9 }, keep: false });
    expect(parseOwnership(labels)?.expiresAt.getTime()).toBe(Date.parse('2026-12-02T02:00:00.000Z') + EXPIRY_GRACE_MS);
  });
});
