import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { DockerBackend } from '../../src/docker/docker-backend.js';
import { imageContext } from '../../src/docker/sandbox-image.js';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { localHostId, ownershipLabels, type SupervisorIdentity } from '../../src/backend/ownership-labels.js';
import { mapBounded } from '../../src/core/bounded-pool.js';
import { reap } from '../../src/reaper/reap.js';
import type { Liveness } from '../../src/reaper/reap-policy.js';
import { OWNER_FILE, type OwnerRecord } from '../../src/workspace/host-workspace.js';
import { listWorkspaces } from '../../src/workspace/workspace-list.js';
import { deliveryHold } from '../../src/delivery/delivery-plan.js';
import { savePlan } from '../helpers/delivery-fixtures.js';
import { FakeDocker } from '../helpers/fake-docker.js';

const NOW = new Date('2026-11-28T12:00:00Z');
const clock = { now: () => NOW };
const LIVE_PID = 100;
const liveness: Liveness = (identity: SupervisorIdentity) => (identity.host !== 'box' ? 'other-host' : identity.pid === LIVE_PID ? 'alive' : 'dead');

function labels(run: string, options: { pid?: number; keep?: boolean; host?: string } = {}): Record<string, string> {
  return ownershipLabels({
    taskId: `task-${run}`,
    runId: run,
    supervisor: { host: options.host ?? 'box', pid: options.pid ?? 200, startTicks: 5 },
    expiresAt: new Date(NOW.getTime() + 3_600_000),
    keep: options.keep ?? false,
  });
}

/** One run's pair, as asp run makes it: a volume and a container that mounts it. */
function addRun(docker: FakeDocker, run: string, options: Parameters<typeof labels>[1] = {}): void {
  docker.addVolume(`vol-${run}`, labels(run, options));
  docker.addContainer(`ctr-${run}`, labels(run, options), { volume: `vol-${run}` });
}

function emptyRoot(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'asp-reap-unit-'));
}

function ownedDir(root: string, name: string, record: Partial<OwnerRecord>, withClone = true): string {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, '.asp'), { recursive: true });
  writeFileSync(path.join(dir, '.asp', 'plan.json'), '{}\n');
  if (withClone) {
    mkdirSync(path.join(dir, 'repo'));
    writeFileSync(path.join(dir, 'repo', 'README.md'), 'x\n');
  }
  const full: OwnerRecord = {
    taskId: name,
    runId: `run-${name}`,
    supervisor: 'box/200/5',
    expiresAt: new Date(NOW.getTime() + 3_600_000).toISOString(),
    keep: false,
    status: 'running',
    createdAt: new Date(NOW.getTime() - 60_000).toISOString(),
    ...record,
  };
  writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify(full));
  return dir;
}

const deps = (docker: FakeDocker, root = emptyRoot()) => ({ backend: new DockerBackend(docker), workspacesRoot: root, clock, liveness });
const reapNow = (docker: FakeDocker, root?: string, options: Partial<Parameters<typeof reap>[1]> = {}) => reap(deps(docker, root), { dryRun: false, all: false, ...options });

describe('reap', () => {
  it('removes the container and volume of a run whose supervisor died, container first', async () => {
    const docker = new FakeDocker();
    addRun(docker, 'dead');
    const report = await reapNow(docker);
    expect(report.items.map((item) => [item.kind, item.name, item.outcome, item.reason])).toEqual([
      ['container', 'c-ctr-dead', 'removed', 'supervisor-gone'],
      ['volume', 'vol-dead', 'removed', 'supervisor-gone'],
    ]);
    expect(docker.calls.filter((call) => call.startsWith('remove'))).toEqual(['removeContainer ctr-dead', 'removeVolume vol-dead']);
    expect(docker.containers.size + docker.volumes.size).toBe(0);
  });

  it('lists with one filtered call per kind', async () => {
    const docker = new FakeDocker();
    for (let index = 0; index < 20; index += 1) addRun(docker, `run${index}`);
    await reapNow(docker);
    expect(docker.calls.filter((call) => call.startsWith('list'))).toEqual(['listContainers', 'listVolumes']);
  });

  it('removes the runner runtimes of other asp images when asked (asp reap), never the current one nor one in use', async () => {
    const docker = new FakeDocker();
    const current = imageContext().tag.split(':')[1] ?? '';
    docker.addVolume(`asp-runtime-${current}`, { 'asp.runtime': current, 'asp.kind': 'runtime' });
    docker.addVolume('asp-runtime-old', { 'asp.runtime': 'old', 'asp.kind': 'runtime' });
    docker.addVolume('asp-runtime-older', { 'asp.runtime': 'older', 'asp.kind': 'runtime' });
    docker.addContainer('still-on-older', {}, { volume: 'asp-runtime-older' });
    // The sweep at every start leaves runtimes alone: another asp version may still mount its own between tasks.
    expect((await reapNow(docker)).runtimes).toEqual([]);
    expect((await reapNow(docker, undefined, { runtimes: true, dryRun: true })).runtimes).toEqual(['asp-runtime-old', 'asp-runtime-older']);
    expect(docker.volumes.size).toBe(3);
    expect((await reapNow(docker, undefined, { runtimes: true })).runtimes).toEqual(['asp-runtime-old']);
    expect([...docker.volumes.keys()].sort()).toEqual([`asp-runtime-${current}`, 'asp-runtime-older']);
  });

  it("leaves unlabelled, damaged, live, kept and other hosts' unexpired objects alone", async () => {
    const docker = new FakeDocker();
    docker.addContainer('plain', { 'com.example': 'x' });
    docker.addVolume('asp-ws-looks-like-ours', {});
    docker.addContainer('damaged', { ...labels('damaged'), 'asp.supervisor': 'garbage' });
    addRun(docker, 'live', { pid: LIVE_PID });
    addRun(docker, 'kept', { keep: true });
    addRun(docker, 'remote', { host: 'elsewhere' });
    const report = await reapNow(docker);
    expect(report.items).toEqual([]);
    expect(report.skipped).toEqual({ 'not-asp': 1, 'supervisor-alive': 2, kept: 2, 'not-expired': 2 });
    expect(docker.containers.size).toBe(5);
    expect(docker.volumes.size).toBe(4);
  });

  it('takes kept objects of dead runs with --all, never live ones', async () => {
    const docker = new FakeDocker();
    addRun(docker, 'kept', { keep: true });
    addRun(docker, 'live', { pid: LIVE_PID, keep: true });
    const report = await reapNow(docker, undefined, { all: true });
    expect(report.items.map((item) => item.name)).toEqual(['c-ctr-kept', 'vol-kept']);
    expect([...docker.containers.keys()]).toEqual(['ctr-live']);
  });

  it('with --older-than, leaves dead objects that are younger', async () => {
    const docker = new FakeDocker();
    docker.addContainer('young', labels('young'), { createdAt: new Date(NOW.getTime() - 60_000) });
    docker.addContainer('old', labels('old'), { createdAt: new Date(NOW.getTime() - 7_200_000) });
    docker.addVolume('unknown-age', labels('unknown'), { createdAt: undefined });
    const report = await reapNow(docker, undefined, { olderThanMs: 3_600_000 });
    expect(report.items.map((item) => item.name)).toEqual(['c-old']);
    expect(report.skipped).toEqual({ 'too-recent': 2 });
  });

  it('removes nothing with --dry-run, and says what it would remove', async () => {
    const docker = new FakeDocker();
    addRun(docker, 'dead');
    const root = emptyRoot();
    ownedDir(root, 'abandoned', {});
    const report = await reapNow(docker, root, { dryRun: true });
    expect(report.items.map((item) => item.outcome)).toEqual(['would-remove', 'would-remove', 'would-remove']);
    expect(docker.calls.filter((call) => call.startsWith('remove'))).toEqual([]);
    expect(existsSync(path.join(root, 'abandoned', 'repo'))).toBe(true);
  });

  it('is idempotent: a second reap finds nothing, objects already gone count as removed', async () => {
    const docker = new FakeDocker();
    addRun(docker, 'dead');
    const root = emptyRoot();
    ownedDir(root, 'abandoned', {});
    expect((await reapNow(docker, root)).items).toHaveLength(3);
    expect((await reapNow(docker, root)).items).toEqual([]);
  });

  it('retries a volume still in use, then reports it in use rather than failing', async () => {
    const docker = new FakeDocker();
    docker.addVolume('briefly-busy', labels('a'));
    docker.busyVolumes.set('briefly-busy', 1);
    docker.addVolume('mounted-elsewhere', labels('b'));
    docker.addContainer('foreign', { unrelated: 'yes' }, { volume: 'mounted-elsewhere' });
    const report = await reapNow(docker);
    expect(report.items.map((item) => [item.name, item.outcome])).toEqual([
      ['briefly-busy', 'removed'],
      ['mounted-elsewhere', 'in-use'],
    ]);
  });

  it('keeps removals within the concurrency bound', async () => {
    const docker = new FakeDocker();
    docker.removalDelayMs = 5;
    for (let index = 0; index < 40; index += 1) addRun(docker, `run${index}`);
    const report = await reap({ ...deps(docker), concurrency: 4 }, { dryRun: false, all: false });
    expect(report.items.filter((item) => item.outcome === 'removed')).toHaveLength(80);
    expect(docker.maxInFlight).toBeLessThanOrEqual(4);
    expect(docker.maxInFlight).toBeGreaterThan(1);
  });

  it('still reaps host dirs when the daemon is gone, and says Docker was not reached', async () => {
    const docker = new FakeDocker();
    docker.down = true;
    const root = emptyRoot();
    ownedDir(root, 'abandoned', {});
    const report = await reapNow(docker, root);
    expect(report.docker).toMatchObject({ ok: false, error: expect.stringContaining('does not answer') });
    expect(report.items.map((item) => [item.kind, item.outcome])).toEqual([['workspace', 'removed']]);
  });

  it('reports removals that fail because the daemon went away, without throwing', async () => {
    const docker = new FakeDocker();
    addRun(docker, 'dead');
    const list = docker.listVolumes.bind(docker);
    docker.listVolumes = async (filters) => {
      const volumes = await list(filters);
      docker.down = true;
      return volumes;
    };
    const report = await reapNow(docker);
    expect(report.items.map((item) => item.outcome)).toEqual(['failed', 'failed']);
    expect(report.items[0]?.error).toContain('does not answer');
  });
});

describe('reap of host dirs', () => {
  it("removes a dead run's clone, keeps .asp/ and marks the owner file", async () => {
    const root = emptyRoot();
    const dir = ownedDir(root, 'abandoned', {});
    const report = await reapNow(new FakeDocker(), root);
    expect(report.items).toEqual([expect.objectContaining({ kind: 'workspace', name: dir, outcome: 'removed', detail: 'clone removed, marked abandoned' })]);
    expect(existsSync(path.join(dir, 'repo'))).toBe(false);
    expect(existsSync(path.join(dir, '.asp', 'plan.json'))).toBe(true);
    expect(JSON.parse(readFileSync(path.join(dir, OWNER_FILE), 'utf8'))).toMatchObject({ status: 'abandoned', reapedAt: NOW.toISOString() });
  });

  it("never touches dirs without an owner file, with a damaged one, symlinks, or a live run's", async () => {
    const root = emptyRoot();
    mkdirSync(path.join(root, 'stranger', 'repo'), { recursive: true });
    const damaged = ownedDir(root, 'damaged', {});
    writeFileSync(path.join(damaged, OWNER_FILE), '{"taskId": "damaged"');
    const elsewhere = ownedDir(emptyRoot(), 'elsewhere', {});
    symlinkSync(elsewhere, path.join(root, 'link'));
    ownedDir(root, 'live', { supervisor: `box/${LIVE_PID}/5` });
    const report = await reapNow(new FakeDocker(), root, { all: true });
    expect(report.items).toEqual([]);
    for (const clone of [path.join(root, 'stranger', 'repo'), path.join(damaged, 'repo'), path.join(elsewhere, 'repo'), path.join(root, 'live', 'repo')]) {
      expect(existsSync(clone)).toBe(true);
    }
  });

  it('keeps the clone of a task awaiting asp approve, or whose push failed, unless --all', async () => {
    const root = emptyRoot();
    const gate = ownedDir(root, 'at-the-gate', { status: 'awaiting_approval', finishedAt: NOW.toISOString() });
    const pushFailed = ownedDir(root, 'push-failed', { status: 'failed', finishedAt: NOW.toISOString() });
    await savePlan(root, 'push-failed', { hitlStatus: 'not_required', error: 'push rejected' });
    const leftover = ownedDir(root, 'cleanup-failed', { status: 'failed', finishedAt: NOW.toISOString() });
    // A plan the sandbox planted in .asp/ is data: it keeps nothing.
    const planted = ownedDir(root, 'planted', { status: 'failed', finishedAt: NOW.toISOString() });
    writeFileSync(path.join(planted, '.asp', 'delivery.json'), readFileSync(path.join(pushFailed, '.asp-host', 'delivery.json'), 'utf8').replaceAll('push-failed', 'planted'));
    const report = await reapNow(new FakeDocker(), root);
    expect(report.items.map((item) => item.name).sort()).toEqual([leftover, planted].sort());
    expect(report.skipped).toEqual({ 'awaiting-decision': 2 });
    expect(existsSync(path.join(gate, 'repo'))).toBe(true);
    expect(existsSync(path.join(pushFailed, 'repo'))).toBe(true);
    // --all releases them: the clones go, and nothing waits any more (retention may prune them later).
    expect((await reapNow(new FakeDocker(), root, { all: true })).items).toHaveLength(2);
    expect(existsSync(path.join(pushFailed, 'repo'))).toBe(false);
    const entries = await listWorkspaces(root, deliveryHold);
    expect(entries.filter((entry) => entry.awaitingDecision)).toEqual([]);
  });

  it('keeps the clone of a task whose own delivery plan is damaged, and says why', async () => {
    const root = emptyRoot();
    const dir = ownedDir(root, 'damaged-plan', { status: 'failed', finishedAt: NOW.toISOString() });
    mkdirSync(path.join(dir, '.asp-host'));
    writeFileSync(path.join(dir, '.asp-host', 'delivery.json'), '{"schema":"asp.delivery/v1","taskId":"damaged-plan","entries":[{"repo":null');
    const [entry] = await listWorkspaces(root, deliveryHold);
    expect(entry).toMatchObject({ awaitingDecision: true, deliveryProblem: 'delivery plan damaged (not JSON)' });
    expect((await reapNow(new FakeDocker(), root)).skipped).toEqual({ 'awaiting-decision': 1 });
  });

  it('releases a kept dir with --all: clone removed, keep cleared so retention may take it', async () => {
    const root = emptyRoot();
    const dir = ownedDir(root, 'kept', { keep: true, status: 'passed', finishedAt: NOW.toISOString() });
    expect((await reapNow(new FakeDocker(), root)).items).toEqual([]);
    await reapNow(new FakeDocker(), root, { all: true });
    expect(existsSync(path.join(dir, 'repo'))).toBe(false);
    expect(JSON.parse(readFileSync(path.join(dir, OWNER_FILE), 'utf8'))).toMatchObject({ status: 'passed', keep: false });
  });
});

describe('reap: a machine of the same host name on the same daemon', () => {
  const here = localHostId();
  const twinId = { machine: 'f'.repeat(32), boot: '22222222-2222-4222-8222-222222222222', pidNamespace: '4026531836' };
  // Our host name, a pid that is gone here: by the name alone, a dead supervisor of ours.
  const twin = (run: string, expiresAt: Date) =>
    ownershipLabels({ taskId: `task-${run}`, runId: run, supervisor: { host: os.hostname(), pid: 2 ** 22 + 1, startTicks: 5, hostId: twinId }, expiresAt, keep: false });

  it.skipIf(!here)("leaves another machine's run to its expiry, and takes it once expired (the host's own liveness)", async () => {
    const docker = new FakeDocker();
    docker.addContainer('ctr-twin-live', twin('twin-live', new Date(NOW.getTime() + 3_600_000)));
    docker.addContainer('ctr-twin-expired', twin('twin-expired', new Date(NOW.getTime() - 1)));
    // The same, labelled by an older asp (no host id): taken as ours, and dead, as before.
    docker.addContainer(
      'ctr-old',
      ownershipLabels({ taskId: 'task-old', runId: 'old', supervisor: { host: os.hostname(), pid: 2 ** 22 + 1, startTicks: 5 }, expiresAt: new Date(NOW.getTime() + 3_600_000), keep: false }),
    );
    const root = emptyRoot();
    ownedDir(root, 'twin-dir', { supervisor: `${os.hostname()}/${2 ** 22 + 1}/5`, supervisorHostId: `${twinId.machine}/${twinId.boot}/${twinId.pidNamespace}` });

    const report = await reap({ backend: new DockerBackend(docker), workspacesRoot: root, clock }, { dryRun: false, all: false });

    expect(report.items.map((item) => [item.name, item.reason, item.outcome]).sort()).toEqual([
      ['c-ctr-old', 'supervisor-gone', 'removed'],
      ['c-ctr-twin-expired', 'expired', 'removed'],
    ]);
    expect([...docker.containers.keys()]).toEqual(['ctr-twin-live']);
    expect(report.skipped).toEqual({ 'not-expired': 2 });
    expect(existsSync(path.join(root, 'twin-dir', 'repo'))).toBe(true);
  });
});

describe('bounded pool', () => {
  it('keeps input order and at most `limit` in flight', async () => {
    let inFlight = 0;
    let peak = 0;
    const results = await mapBounded([5, 1, 4, 2, 3], 2, async (value) => {
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      await new Promise((resolve) => setTimeout(resolve, value));
      inFlight -= 1;
      return value * 10;
    });
    expect(results).toEqual([50, 10, 40, 20, 30]);
    expect(peak).toBe(2);
    expect(await mapBounded([], 4, async () => 1)).toEqual([]);
  });
});
