import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CleanupStack } from '../../src/core/cleanup-stack.js';
import { DockerBackend } from '../../src/docker/docker-backend.js';
import { currentSupervisor, LABEL, ownershipLabels, type SupervisorIdentity } from '../../src/backend/ownership-labels.js';
import { limitsSchema } from '../../src/config/task-spec.js';
import { newSeq } from '../../src/pool/pool-record.js';
import { reap } from '../../src/reaper/reap.js';
import { systemClock } from '../../src/core/clock.js';
import { asp } from '../helpers/cli.js';
import { docker, dockerAvailable, leftovers } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';

function scratch() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-warm-'));
  return { dir, env: { ASP_HOME: path.join(dir, 'home'), ASP_WORKSPACES: path.join(dir, 'ws'), CI: 'true' } };
}

/** The host phases a run's trace recorded, by name. */
function hostPhases(tracePath: string): string[] {
  const trace = JSON.parse(readFileSync(tracePath, 'utf8')) as { observations: Array<{ name: string }> };
  return trace.observations.map((observation) => observation.name).filter((name) => name.startsWith('host:'));
}

async function poolContainers(): Promise<Array<{ name: string; state: string; labels: Record<string, string> }>> {
  return (await docker.listContainers([`${LABEL.managed}=true`])).filter((container) => container.labels[LABEL.pool] !== undefined);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Warm sandboxes made straight through the backend, in a pool of their own, owned by `keeper`. */
async function warmMaker() {
  const backend = new DockerBackend(docker);
  const image = await backend.prepareImage({});
  const warm = backend.warm;
  const pool = `test-${Date.now().toString(36)}`;
  const make = async (keeper: SupervisorIdentity) => {
    const seq = newSeq('0123456789ab');
    const labels = { ...ownershipLabels({ taskId: 'pool', runId: seq, supervisor: keeper, expiresAt: new Date(Date.now() + 600_000), keep: false }), [LABEL.pool]: pool };
    await warm.prepare({ image: image.ref, limits: limitsSchema.parse({}), runtime: undefined, labels, seq });
    return { seq, pool };
  };
  return { backend, warm, pool, make };
}

/** A supervisor that is not alive: a pid past any this machine hands out. */
const deadSupervisor: SupervisorIdentity = { ...currentSupervisor(), pid: 4_000_000, startTicks: 1 };

describe.skipIf(!dockerAvailable)('warm sandboxes against the real Docker engine', () => {
  const homes: Array<Record<string, string>> = [];
  afterEach(async () => {
    // A failed test must not leave a keeper, or what it made, behind for the next one.
    for (const env of homes.splice(0)) await asp(['pool', 'down'], env);
    for (const container of await poolContainers()) await docker.removeContainer(container.name);
    for (const volume of [...(await docker.listVolumes([LABEL.pool])), ...(await docker.listVolumes([LABEL.claims]))]) await docker.removeVolume(volume.name);
  });
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('asp pool up keeps N hardened sandboxes started; asp run claims one, gets its --env over the protocol, and the keeper starts the next', async () => {
    const { env } = scratch();
    homes.push(env);
    const up = await asp(['pool', 'up', '--size', '2', '--ttl', '5m', '--json'], env);
    expect(up.code, up.stderr).toBe(0);
    const pool = JSON.parse(up.stdout) as { key: string; id: string; size: number; ready: number };
    expect(pool).toMatchObject({ size: 2, ready: 2 });
    const ready = (await poolContainers()).filter((container) => container.labels[LABEL.pool] === pool.id);
    expect(pool.id.startsWith(`${pool.key}-`)).toBe(true);
    expect(ready.map((container) => container.state)).toEqual(['running', 'running']);
    // The same hardening as a task's sandbox, and nothing of a task's (no workspace, no --env values).
    for (const container of ready) {
      expect(container.name).toMatch(/^asp-pool-/);
      expect(container.labels[LABEL.task]).toBe('pool');
      expect(Date.parse(container.labels[LABEL.expiresAt] ?? '')).toBeGreaterThan(Date.now());
    }
    const hardening = await docker.inspectContainer(ready[0]?.name ?? '');
    expect(hardening).toMatchObject({ networkMode: 'none', readonlyRootfs: true, user: '0:0', privileged: false, init: true, binds: [] });

    const repo = repoWith({ 'README.md': 'warm\n' });
    const run = await asp(['run', '--repo', repo, '--task', 'warm', '--env', 'WARM_VALUE', '--step', 'check=test "$WARM_VALUE" = from-the-host && test ! -e /workspace/stale', '--json'], {
      ...env,
      WARM_VALUE: 'from-the-host',
    });
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { status: string; tracePath: string };
    expect(result.status).toBe('passed');
    const phases = hostPhases(result.tracePath);
    expect(phases).toContain('host:claim');
    expect(phases).not.toContain('host:container-create');
    // The claimed one is gone with its task; the keeper put a new one in its place.
    await until('the pool is full again', async () => (await poolContainers()).filter((container) => container.state === 'running' && container.name.startsWith('asp-pool-')).length === 2);
    const names = (await poolContainers()).map((container) => container.name);
    expect(names.filter((name) => name.startsWith('asp-claimed-'))).toEqual([]);
    expect(names.filter((name) => ready.some((before) => before.name === name))).toHaveLength(1);

    const status = await asp(['pool', 'status', '--json'], env);
    expect(JSON.parse(status.stdout)).toMatchObject([{ key: pool.key, size: 2, ready: 2, keeper: 'running' }]);
    const down = await asp(['pool', 'down', '--json'], env);
    expect(down.code, down.stderr).toBe(0);
    expect(JSON.parse(down.stdout)).toMatchObject({ pools: [{ key: pool.key }] });
    expect(await poolContainers()).toEqual([]);
    expect(readdirSync(path.join(env.ASP_HOME, 'pools')).filter((name) => name.endsWith('.json'))).toEqual([]);
  }, 120_000);

  it('asp pool up again resizes the pool (its keeper retires what is over the size) and keeps its id', async () => {
    const { env } = scratch();
    homes.push(env);
    const sizes: Array<{ id: string; ready: number }> = [];
    for (const size of ['1', '3', '1']) {
      const up = await asp(['pool', 'up', '--size', size, '--ttl', '5m', '--json'], env);
      expect(up.code, up.stderr).toBe(0);
      sizes.push(JSON.parse(up.stdout) as { id: string; ready: number });
    }
    expect(new Set(sizes.map((pool) => pool.id)).size).toBe(1);
    expect(sizes.map((pool) => pool.ready).slice(0, 2)).toEqual([1, 3]);
    await until('the pool is back to one', async () => (await poolContainers()).length === 1);
    expect((await poolContainers())[0]?.state).toBe('running');
  }, 120_000);

  it('a run whose limits differ from the pool makes its own sandbox', async () => {
    const { env } = scratch();
    homes.push(env);
    expect((await asp(['pool', 'up', '--size', '1', '--ttl', '5m'], env)).code).toBe(0);
    const repo = repoWith({ 'README.md': 'other limits\n' });
    const run = await asp(['run', '--repo', repo, '--task', 'cold', '--memory', '1g', '--step', 'ok=true', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    const phases = hostPhases((JSON.parse(run.stdout) as { tracePath: string }).tracePath);
    expect(phases).toContain('host:container-create');
    expect(phases).not.toContain('host:claim');
  }, 120_000);

  it('of many claims at once on one ready sandbox, exactly one wins', async () => {
    const { warm, pool, make } = await warmMaker();
    const { seq } = await make(currentSupervisor());
    const [entry] = await warm.ready(pool);
    expect(entry?.seq).toBe(seq);
    const stacks = Array.from({ length: 8 }, () => new CleanupStack());
    const holder = (index: number) => ({
      labels: ownershipLabels({ taskId: `t${index}`, runId: `r${index}`, supervisor: currentSupervisor(), expiresAt: new Date(Date.now() + 600_000), keep: false }),
      id: `t${index}-r${index}`,
    });
    const claims = await Promise.all(stacks.map((stack, index) => warm.claim(entry ?? { seq, pool }, stack, holder(index))));
    expect(claims.filter((claimed) => claimed !== undefined)).toHaveLength(1);
    // The losers took their markers back at once; the winner's goes with its sandbox.
    const markers = (await docker.listVolumes([`${LABEL.claims}=${seq}`])).map((volume) => volume.name);
    expect(markers).toHaveLength(1);
    for (const stack of stacks) await stack.dispose();
    expect(await docker.listVolumes([`${LABEL.claims}=${seq}`])).toEqual([]);
    expect(await warm.ready(pool)).toEqual([]);
  }, 60_000);

  it('the reaper judges a claimed sandbox by its claim: a live task keeps it though its keeper is dead, a dead task loses it though its keeper lives', async () => {
    const { backend, warm, pool, make } = await warmMaker();
    const claimAs = (entry: { seq: string; pool: string }, holder: SupervisorIdentity, stack: CleanupStack, id: string) =>
      warm.claim(entry, stack, { labels: ownershipLabels({ taskId: id, runId: 'r', supervisor: holder, expiresAt: new Date(Date.now() + 600_000), keep: false }), id: `${id}-r` });
    const heldByLive = await make(deadSupervisor);
    const heldByDead = await make(currentSupervisor());
    const idleOfLive = await make(currentSupervisor());
    const liveStack = new CleanupStack();
    const deadStack = new CleanupStack();
    expect(await claimAs(heldByLive, currentSupervisor(), liveStack, 'live-task')).toBeDefined();
    expect(await claimAs(heldByDead, deadSupervisor, deadStack, 'dead-task')).toBeDefined();
    const report = await reap(
      { backend, workspacesRoot: mkdtempSync(path.join(os.tmpdir(), 'asp-warm-reap-')), clock: systemClock },
      { dryRun: false, all: false, olderThanMs: undefined, runtimes: false },
    );
    const removed = report.items.filter((item) => item.outcome === 'removed').map((item) => item.name);
    expect(removed.sort()).toEqual([`asp-claim-dead-task-r`, `asp-claimed-${heldByDead.seq}`, `asp-pool-ws-${heldByDead.seq}`].sort());
    const left = (await poolContainers()).filter((container) => container.labels[LABEL.pool] === pool).map((container) => container.name);
    expect(left.sort()).toEqual([`asp-claimed-${heldByLive.seq}`, `asp-pool-${idleOfLive.seq}`].sort());
    await liveStack.dispose();
    await deadStack.dispose();
    expect(await warm.retire(idleOfLive)).toBe(true);
    expect(await poolContainers()).toEqual([]);
  }, 60_000);

  it('a pool ends by itself when its TTL does, and a killed keeper leaves only what asp reap takes', async () => {
    const first = scratch();
    homes.push(first.env);
    expect((await asp(['pool', 'up', '--size', '1', '--ttl', '2s'], first.env)).code).toBe(0);
    await until(
      'the pool ended at its TTL',
      async () =>
        (await poolContainers()).length === 0 &&
        !existsSync(path.join(first.env.ASP_HOME, 'pools', readdirSync(path.join(first.env.ASP_HOME, 'pools')).find((name) => name.endsWith('.json')) ?? 'none')),
      30_000,
    );
    expect(readFileSync(path.join(first.env.ASP_HOME, 'pools', readdirSync(path.join(first.env.ASP_HOME, 'pools')).find((name) => name.endsWith('.log')) ?? ''), 'utf8')).toMatch(/TTL ended/);

    const second = scratch();
    homes.push(second.env);
    const up = await asp(['pool', 'up', '--size', '2', '--ttl', '5m', '--json'], second.env);
    expect(up.code, up.stderr).toBe(0);
    const key = (JSON.parse(up.stdout) as { key: string }).key;
    const record = JSON.parse(readFileSync(path.join(second.env.ASP_HOME, 'pools', `${key}.json`), 'utf8')) as { keeper: string };
    const pid = Number(record.keeper.split('/')[1]);
    process.kill(pid, 'SIGKILL');
    await until('the keeper is gone', async () => !existsSync(`/proc/${pid}`));
    // Its sandboxes are a dead owner's now: any run's sweep, or asp reap, takes them; no run claims them.
    const repo = repoWith({ 'README.md': 'after the keeper\n' });
    const run = await asp(['run', '--repo', repo, '--task', 'cold', '--step', 'ok=true', '--json'], second.env);
    expect(run.code, run.stderr).toBe(0);
    expect(hostPhases((JSON.parse(run.stdout) as { tracePath: string }).tracePath)).toContain('host:container-create');
    const reaped = await asp(['reap', '--json'], second.env);
    expect(reaped.code, reaped.stderr).toBe(0);
    expect(await poolContainers()).toEqual([]);
  }, 120_000);

  it('asp batch makes the next tasks’ sandboxes while the current ones run (and not with --no-prewarm), leaving nothing', async () => {
    const repo = repoWith({ 'README.md': 'prewarm\n' });
    for (const prewarm of [true, false]) {
      const { dir, env } = scratch();
      const lines = Array.from({ length: 6 }, (_, index) => JSON.stringify({ id: `warm-${index}`, repo, steps: [{ name: 'work', run: `echo ${index}` }] }));
      writeFileSync(path.join(dir, 'tasks.jsonl'), lines.join('\n') + '\n');
      const result = await asp(['batch', path.join(dir, 'tasks.jsonl'), '--concurrency', '2', '--json', ...(prewarm ? [] : ['--no-prewarm'])], env);
      expect(result.code, result.stderr).toBe(0);
      const summary = JSON.parse(result.stdout) as { passed: number; tasks: Array<{ artifactsDir: string | null }> };
      expect(summary.passed).toBe(6);
      const claimed = summary.tasks.filter((task) => task.artifactsDir && hostPhases(path.join(task.artifactsDir, 'trace.json')).includes('host:claim')).length;
      if (prewarm) expect(claimed).toBeGreaterThanOrEqual(5);
      else expect(claimed).toBe(0);
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    }
  }, 180_000);

  it('two pools of one shape (two ASP_HOMEs on one engine) never count, take or end each other’s sandboxes', async () => {
    const [first, second] = [scratch(), scratch()];
    homes.push(first.env, second.env);
    const ids: string[] = [];
    for (const { env } of [first, second]) {
      const up = await asp(['pool', 'up', '--size', '1', '--ttl', '5m', '--json'], env);
      expect(up.code, up.stderr).toBe(0);
      ids.push((JSON.parse(up.stdout) as { id: string }).id);
    }
    expect(ids[0]?.slice(0, 12)).toBe(ids[1]?.slice(0, 12));
    expect(ids[0]).not.toBe(ids[1]);
    expect((await poolContainers()).map((container) => container.labels[LABEL.pool]).sort()).toEqual([...ids].sort());
    expect((await asp(['pool', 'down'], first.env)).code).toBe(0);
    expect((await poolContainers()).map((container) => container.labels[LABEL.pool])).toEqual([ids[1]]);
  }, 120_000);

  it('a kept task keeps the warm sandbox it claimed in a batch; asp reap --all takes it', async () => {
    const { dir, env } = scratch();
    const repo = repoWith({ 'README.md': 'kept\n' });
    const lines = [JSON.stringify({ id: 'kept-0', repo, keep: true, steps: [{ name: 'work', run: 'true' }] }), JSON.stringify({ id: 'kept-1', repo, steps: [{ name: 'work', run: 'true' }] })];
    writeFileSync(path.join(dir, 'tasks.jsonl'), lines.join('\n') + '\n');
    const result = await asp(['batch', path.join(dir, 'tasks.jsonl'), '--concurrency', '1', '--json'], env);
    expect(result.code, result.stderr).toBe(0);
    const left = await leftovers();
    expect(left.containers).toHaveLength(1);
    expect(left.containers[0]).toMatch(/^asp-claimed-/);
    expect(left.volumes.some((volume) => volume.startsWith('asp-claim-kept-0-'))).toBe(true);
    expect((await asp(['reap'], env)).code).toBe(0);
    expect((await leftovers()).containers).toHaveLength(1);
    expect((await asp(['reap', '--all'], env)).code).toBe(0);
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  }, 120_000);

  it('refuses bad pool input with one line and exit 2', async () => {
    const { env } = scratch();
    for (const [args, message] of [
      [['pool', 'up', '--size', '0'], /--size "0" is not a whole number from 1 to 64/],
      [['pool', 'up', '--size', 'many'], /--size "many" is not a whole number from 1 to 64/],
      [['pool', 'up', '--ttl', '2d'], /--ttl 2d is not a duration from 1s to 24h/],
      [['pool', 'up', '--ttl', 'soon'], /--ttl soon is not a duration/],
      [['pool', 'up', '--cpus', 'lots'], /--cpus "lots" is not a number/],
      [['pool', 'up', '--memory', '1k'], /memory must be at least 6m/],
      [['pool', 'down', '--key', 'nope'], /--key nope is not a pool key/],
      [['pool', 'keep', 'nope'], /nope is not a pool key/],
    ] as const) {
      const result = await asp([...args], env);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(message);
    }
    const k8s = await asp(['pool', 'up'], { ...env, ASP_BACKEND: 'k8s' });
    expect(k8s.code).toBe(2);
    expect(k8s.stderr).toMatch(/warm pools run on Docker only/);
    expect(await poolContainers()).toEqual([]);
  }, 60_000);
});
