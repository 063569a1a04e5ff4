import { existsSync, mkdirSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { DockerBackend } from '../../src/docker/docker-backend.js';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { parseAgeOption } from '../../src/cli/age-option.js';
import { formatAge } from '../../src/config/units.js';
import { readSettings } from '../../src/config/settings.js';
import type { SupervisorIdentity } from '../../src/backend/ownership-labels.js';
import { pruneWorkspaces } from '../../src/reaper/prune-workspaces.js';
import type { Liveness } from '../../src/reaper/reap-policy.js';
import { sweep } from '../../src/reaper/sweep.js';
import type { Log } from '../../src/core/log.js';
import { OWNER_FILE, type OwnerRecord } from '../../src/workspace/host-workspace.js';
import { savePlan } from '../helpers/delivery-fixtures.js';
import { deliveryHold } from '../../src/delivery/delivery-plan.js';
import { listWorkspaces } from '../../src/workspace/workspace-list.js';
import { ownershipLabels } from '../../src/backend/ownership-labels.js';
import { FakeDocker } from '../helpers/fake-docker.js';

const NOW = new Date('2026-11-28T12:00:00Z');
const DAY = 86_400_000;
const clock = { now: () => NOW };
const liveness: Liveness = (identity: SupervisorIdentity) => (identity.pid === 100 ? 'alive' : 'dead');
const daysAgo = (days: number) => new Date(NOW.getTime() - days * DAY).toISOString();

function finishedDir(root: string, name: string, finishedDaysAgo: number, record: Partial<OwnerRecord> = {}): string {
  const dir = path.join(root, name);
  mkdirSync(path.join(dir, '.asp', 'nested'), { recursive: true });
  writeFileSync(path.join(dir, '.asp', 'trace.json'), '{"schema":"asp.trace/v1"}\n');
  writeFileSync(path.join(dir, '.asp', 'nested', 'step.json'), '{}\n');
  const full: OwnerRecord = {
    taskId: name,
    runId: `run-${name}`,
    supervisor: 'box/200/5',
    expiresAt: daysAgo(finishedDaysAgo),
    keep: false,
    status: 'passed',
    createdAt: daysAgo(finishedDaysAgo + 0.1),
    finishedAt: daysAgo(finishedDaysAgo),
    ...record,
  };
  writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify(full));
  return dir;
}

const root = () => mkdtempSync(path.join(os.tmpdir(), 'asp-retention-unit-'));
const prune = (workspacesRoot: string, options: Partial<Parameters<typeof pruneWorkspaces>[1]> = {}) =>
  pruneWorkspaces({ workspacesRoot, clock, liveness }, { olderThanMs: 7 * DAY, dryRun: false, all: false, ...options });

async function tarEntries(file: string): Promise<string[]> {
  const names: string[] = [];
  const extract = tarStream.extract();
  extract.on('entry', (header, stream, next) => {
    names.push(header.name);
    stream.on('end', next);
    stream.resume();
  });
  const done = new Promise<void>((resolve, reject) => extract.on('finish', () => resolve()).on('error', reject));
  extract.end(gunzipSync(await readFile(file)));
  await done;
  return names.sort();
}

describe('workspaces prune (retention)', () => {
  it('deletes the dirs of tasks finished before the retention period, and no others', async () => {
    const workspaces = root();
    finishedDir(workspaces, 'old', 8);
    finishedDir(workspaces, 'recent', 2);
    finishedDir(workspaces, 'old-kept', 30, { keep: true });
    finishedDir(workspaces, 'live', 30, { status: 'running', finishedAt: undefined, supervisor: 'box/100/5' });
    mkdirSync(path.join(finishedDir(workspaces, 'old-awaiting-approval', 30, { status: 'awaiting_approval' }), 'repo'));
    // A failed push keeps its clone for asp approve, like a decision: asp's own plan says so.
    mkdirSync(path.join(finishedDir(workspaces, 'old-push-failed', 30, { status: 'failed' }), 'repo'));
    await savePlan(workspaces, 'old-push-failed', { hitlStatus: 'not_required', error: 'push rejected' });
    // Once its clone is gone (asp reap --all), nothing waits: retention takes it like any other.
    finishedDir(workspaces, 'old-released', 30, { status: 'failed' });
    await savePlan(workspaces, 'old-released', { hitlStatus: 'not_required', error: 'push rejected' });
    mkdirSync(path.join(workspaces, 'not-asps'));
    const report = await prune(workspaces);
    expect(report.items.map((item) => [item.taskId, item.outcome])).toEqual([
      ['old', 'pruned'],
      ['old-released', 'pruned'],
    ]);
    expect(report.kept).toBe(3);
    expect(readdirSync(workspaces).sort()).toEqual(['live', 'not-asps', 'old-awaiting-approval', 'old-kept', 'old-push-failed', 'recent']);
    expect((await prune(workspaces, { all: true })).items.map((item) => item.taskId)).toEqual(expect.arrayContaining(['old-awaiting-approval', 'old-push-failed']));
  });

  it('lists without deleting on --dry-run, with size and age', async () => {
    const workspaces = root();
    finishedDir(workspaces, 'old', 8);
    const report = await prune(workspaces, { dryRun: true });
    expect(report.items).toEqual([expect.objectContaining({ taskId: 'old', outcome: 'would-prune', ageMs: 8 * DAY })]);
    // The whole dir goes, so its size counts the owner file as well as the 29 bytes of .asp/.
    expect(report.items[0]?.bytes).toBeGreaterThan(29);
    expect(existsSync(path.join(workspaces, 'old'))).toBe(true);
  });

  it('archives .asp/ and the owner file as tar.gz before deleting', async () => {
    const workspaces = root();
    finishedDir(workspaces, 'old', 8);
    const archives = path.join(root(), 'archive');
    const report = await prune(workspaces, { archiveDir: archives });
    const archive = report.items[0]?.archive as string;
    expect(archive).toBe(path.join(archives, 'old.tar.gz'));
    expect(await tarEntries(archive)).toEqual(['old/.asp', 'old/.asp-owner.json', 'old/.asp/nested', 'old/.asp/nested/step.json', 'old/.asp/trace.json']);
    expect(existsSync(path.join(workspaces, 'old'))).toBe(false);

    // The same task name again never overwrites the first archive.
    finishedDir(workspaces, 'old', 9);
    const again = await prune(workspaces, { archiveDir: archives });
    expect(again.items[0]?.archive).toBe(path.join(archives, 'old-run-old.tar.gz'));
  });

  it('keeps the dir when its archive cannot be written', async () => {
    const workspaces = root();
    finishedDir(workspaces, 'old', 8);
    const blocker = path.join(root(), 'a-file');
    writeFileSync(blocker, 'x');
    const report = await prune(workspaces, { archiveDir: blocker });
    expect(report.items).toEqual([expect.objectContaining({ outcome: 'failed', error: expect.stringContaining('cannot create the archive dir') })]);
    expect(existsSync(path.join(workspaces, 'old', '.asp', 'trace.json'))).toBe(true);
  });

  it('takes kept tasks only with --all', async () => {
    const workspaces = root();
    finishedDir(workspaces, 'old-kept', 30, { keep: true });
    expect((await prune(workspaces, { all: true })).items.map((item) => item.taskId)).toEqual(['old-kept']);
  });
});

const quiet = () => {
  const lines: string[] = [];
  const log: Log = { info: (_f, m) => lines.push(`info ${m}`), warn: (_f, m) => lines.push(`warn ${m}`), error: (_f, m) => lines.push(`error ${m}`), debug: () => {} };
  return { log, lines };
};

describe('the sweep at the start of every run', () => {
  const settings = (workspacesRoot: string) => ({ ...readSettings({}), workspacesRoot });
  const deadLabels = ownershipLabels({ taskId: 't', runId: 'r', supervisor: { host: 'box', pid: 200, startTicks: 5 }, expiresAt: NOW, keep: false });

  it('says nothing when there is nothing to do', async () => {
    const { log, lines } = quiet();
    expect(await sweep({ backend: new DockerBackend(new FakeDocker()), settings: settings(root()), clock, log, liveness })).toEqual({ reaped: 0, pruned: 0, failed: 0 });
    expect(lines).toEqual([]);
  });

  it('reaps dead runs and applies retention, in one line each', async () => {
    const { log, lines } = quiet();
    const docker = new FakeDocker();
    docker.addContainer('c', deadLabels);
    docker.addVolume('v', deadLabels);
    const workspaces = root();
    finishedDir(workspaces, 'old', 8);
    expect(await sweep({ backend: new DockerBackend(docker), settings: settings(workspaces), clock, log, liveness })).toEqual({ reaped: 2, pruned: 1, failed: 0 });
    expect(lines).toEqual(['info swept what dead runs left: 1 containers, 1 volumes, 0 workspace dirs', 'info retention: removed 1 workspace dirs of tasks finished over 7d ago']);
  });

  it('never throws, and leaves a daemon that is gone for the run to report', async () => {
    const { log, lines } = quiet();
    const docker = new FakeDocker();
    docker.down = true;
    expect(await sweep({ backend: new DockerBackend(docker), settings: settings(root()), clock, log, liveness })).toEqual({ reaped: 0, pruned: 0, failed: 0 });
    expect(lines).toEqual([]);
    const unreadable = path.join(root(), 'file');
    writeFileSync(unreadable, 'x');
    expect((await sweep({ backend: new DockerBackend(new FakeDocker()), settings: settings(unreadable), clock, log, liveness })).failed).toBe(1);
    expect(lines[0]).toMatch(/^warn sweep failed: cannot read the workspace root/);
  });
});

describe('what the sweep leaves unread: tasks that finished within the retention period', () => {
  /** A finished dir as `asp run` leaves it: owner file, result, `.asp/`; the clone gone unless `clone`. */
  function settledDir(workspaces: string, name: string, options: { clone?: boolean; result?: boolean; changedDaysAgo?: number } = {}): string {
    const dir = finishedDir(workspaces, name, options.changedDaysAgo ?? 0);
    mkdirSync(path.join(dir, '.asp-host'), { recursive: true });
    if (options.result ?? true) writeFileSync(path.join(dir, '.asp-host', 'result.json'), '{}\n');
    if (options.clone) mkdirSync(path.join(dir, 'repo'));
    if (options.changedDaysAgo !== undefined) {
      const at = new Date(NOW.getTime() - options.changedDaysAgo * DAY);
      utimesSync(dir, at, at);
    }
    return dir;
  }
  const settled = { now: NOW, withinMs: 7 * DAY };

  it('leaves out, unread, a finished task whose dir changed within the period; lists every other', async () => {
    const workspaces = root();
    settledDir(workspaces, 'recent', { changedDaysAgo: 1 });
    settledDir(workspaces, 'recent-with-clone', { changedDaysAgo: 1, clone: true });
    settledDir(workspaces, 'recent-no-result', { changedDaysAgo: 1, result: false });
    settledDir(workspaces, 'old', { changedDaysAgo: 8 });
    const names = async (filter?: typeof settled) => (await listWorkspaces(workspaces, deliveryHold, filter)).map((entry) => entry.name);
    expect(await names()).toEqual(['old', 'recent', 'recent-no-result', 'recent-with-clone']);
    expect(await names(settled)).toEqual(['old', 'recent-no-result', 'recent-with-clone']);
    // A retention of 0 reads everything.
    expect(await names({ now: NOW, withinMs: 0 })).toEqual(['old', 'recent', 'recent-no-result', 'recent-with-clone']);
  });

  it('the sweep still prunes what is due and reaps a dead run beside thousands of settled dirs', async () => {
    const { log, lines } = quiet();
    const workspaces = root();
    for (let index = 0; index < 2000; index += 1) settledDir(workspaces, `done-${index}`, { changedDaysAgo: 1 });
    settledDir(workspaces, 'old', { changedDaysAgo: 8 });
    finishedDir(workspaces, 'abandoned', 0, { status: 'running', finishedAt: undefined });
    mkdirSync(path.join(workspaces, 'abandoned', 'repo'));
    expect(await sweep({ backend: new DockerBackend(new FakeDocker()), settings: { ...readSettings({}), workspacesRoot: workspaces }, clock, log, liveness })).toEqual({
      reaped: 1,
      pruned: 1,
      failed: 0,
    });
    expect(lines).toEqual(['info swept what dead runs left: 0 containers, 0 volumes, 1 workspace dirs', 'info retention: removed 1 workspace dirs of tasks finished over 7d ago']);
    expect(existsSync(path.join(workspaces, 'old'))).toBe(false);
    expect(existsSync(path.join(workspaces, 'abandoned', 'repo'))).toBe(false);
    expect(readdirSync(workspaces)).toHaveLength(2001);
  });
});

describe('--older-than', () => {
  it('takes durations, bare days and 0', () => {
    expect(parseAgeOption('--older-than', '90m')).toBe(90 * 60_000);
    expect(parseAgeOption('--older-than', '36h')).toBe(36 * 3_600_000);
    expect(parseAgeOption('--older-than', '7')).toBe(7 * DAY);
    expect(parseAgeOption('--older-than', '0')).toBe(0);
  });

  it('refuses anything else in one line', () => {
    for (const bad of ['soon', '-1h', '7 days', '']) expect(() => parseAgeOption('--older-than', bad)).toThrow(/--older-than ".*" is not an age/);
  });

  it('formats ages coarsely', () => {
    expect([formatAge(5_000), formatAge(120_000), formatAge(3 * 3_600_000), formatAge(8 * DAY)]).toEqual(['5s', '2m', '3h', '8d']);
  });
});
