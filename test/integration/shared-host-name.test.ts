import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LABEL, localHostId, ownershipLabels, type HostId } from '../../src/backend/ownership-labels.js';
import { asp } from '../helpers/cli.js';
import { docker, dockerAvailable } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';

/** Everything this suite makes outside asp carries this label, so afterAll can find it and nothing else. */
const TEST_LABEL = 'asp-test.shared-host-name';
const TEST_ID = randomBytes(4).toString('hex');
const BASE_IMAGE = 'node:20-bookworm-slim';
/** A pid that no process has here (above the kernel's largest pid_max): by the host name alone, a dead supervisor. */
const GONE_PID = 2 ** 22 + 1;

const dockerCli = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8' }).trim();
const labelArgs = (labels: Record<string, string>) => Object.entries(labels).flatMap(([key, value]) => ['--label', `${key}=${value}`]);

/**
 * Issue 21: two machines with one host name driving one daemon (DOCKER_HOST to a remote engine, a cloned VM).
 * Each would take the other's running tasks for those of its own dead pids. The host id label tells them apart:
 * asp leaves the other machine's objects to their expiry, and `asp doctor` says it saw them and what to do.
 */
describe.skipIf(!dockerAvailable || !localHostId())('another machine with this host name on the same daemon', () => {
  const here: HostId = localHostId() ?? { machine: '', boot: '', pidNamespace: '' };
  // Another machine: another machine id and boot; its pid namespace happens to be the initial one, as ours.
  const twinHost: HostId = { machine: 'f'.repeat(32) === here.machine ? 'e'.repeat(32) : 'f'.repeat(32), boot: randomUUID(), pidNamespace: here.pidNamespace };
  const owned = (run: string, expiresAt: Date, hostId: HostId | undefined) =>
    ownershipLabels({ taskId: `task-${run}`, runId: run, supervisor: { host: os.hostname(), pid: GONE_PID, startTicks: 1, hostId }, expiresAt, keep: false });
  const workspaces = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-twin-')), 'workspaces');
  const env = { ASP_WORKSPACES: workspaces, DOCKER_HOST: process.env.DOCKER_HOST };
  const label = ['--label', `${TEST_LABEL}=${TEST_ID}`];
  const liveRuns: string[] = [];

  /**
   * What each test starts from: the other machine's task, running (its container and its workspace volume); another
   * of its tasks, past its expiry; and one of an asp from before host ids, whose pid is gone here.
   */
  function objectsOfBothKinds(name: string): { live: string; expired: string; older: string; liveContainer: string } {
    const runs = { live: `twin-live-${name}-${TEST_ID}`, expired: `twin-expired-${name}-${TEST_ID}`, older: `older-asp-${name}-${TEST_ID}` };
    const live = owned(runs.live, new Date(Date.now() + 3_600_000), twinHost);
    const liveContainer = dockerCli('run', '-d', '--network', 'none', ...label, ...labelArgs(live), BASE_IMAGE, 'sleep', '600');
    dockerCli('volume', 'create', ...label, ...labelArgs(live), `asp-ws-${runs.live}`);
    liveRuns.push(runs.live);
    dockerCli('create', '--network', 'none', ...label, ...labelArgs(owned(runs.expired, new Date(Date.now() - 60_000), twinHost)), BASE_IMAGE, 'true');
    dockerCli('create', '--network', 'none', ...label, ...labelArgs(owned(runs.older, new Date(Date.now() + 3_600_000), undefined)), BASE_IMAGE, 'true');
    return { ...runs, liveContainer };
  }

  afterAll(async () => {
    const containers = await docker.listContainers([`${TEST_LABEL}=${TEST_ID}`]);
    const volumes = await docker.listVolumes([`${TEST_LABEL}=${TEST_ID}`]);
    for (const container of containers) await docker.removeContainer(container.id);
    for (const volume of volumes) await docker.removeVolume(volume.name);
    // What was left is what was meant to be left: the other machine's live tasks, nothing else.
    expect(containers.map((container) => container.labels[LABEL.run]).sort()).toEqual([...liveRuns].sort());
    expect(volumes.map((volume) => volume.name).sort()).toEqual(liveRuns.map((run) => `asp-ws-${run}`).sort());
  });

  const onDaemon = async (runs: { live: string; expired: string; older: string }) => {
    const names = Object.values(runs);
    const containers = await docker.listContainers([`${TEST_LABEL}=${TEST_ID}`]);
    return containers.map((container) => container.labels[LABEL.run] ?? '').filter((run) => names.includes(run));
  };

  it('asp reap leaves its running task alone until it expires, and takes the expired one and the older asp’s dead one', async () => {
    const runs = objectsOfBothKinds('reap');
    const reaped = await asp(['reap', '--json'], env);
    expect(reaped.code, reaped.stderr).toBe(0);
    const report = JSON.parse(reaped.stdout) as { items: Array<{ runId: string; reason: string; outcome: string }> };
    const ours = report.items.filter((item) => [runs.live, runs.expired, runs.older].includes(item.runId));
    expect(ours.map((item) => [item.runId, item.reason, item.outcome]).sort()).toEqual(
      [
        [runs.expired, 'expired', 'removed'],
        [runs.older, 'supervisor-gone', 'removed'],
      ].sort(),
    );
    expect(await onDaemon(runs)).toEqual([runs.live]);
    expect(dockerCli('inspect', '-f', '{{.State.Running}}', runs.liveContainer)).toBe('true');
    expect(dockerCli('volume', 'ls', '-q', '--filter', `label=${LABEL.run}=${runs.live}`)).toBe(`asp-ws-${runs.live}`);
  });

  it('the sweep at the start of asp run leaves it alone too', { timeout: 120_000 }, async () => {
    const runs = objectsOfBothKinds('sweep');
    const ran = await asp(['run', '--repo', repoWith({ 'README.md': 'x\n' }), '--step', 't=true', '--json'], env);
    expect(ran.code, ran.stderr).toBe(0);
    expect(await onDaemon(runs)).toEqual([runs.live]);
    expect(dockerCli('inspect', '-f', '{{.State.Running}}', runs.liveContainer)).toBe('true');
  });

  it('asp doctor says in one line how many objects another machine of this name has here, and what to do', async () => {
    objectsOfBothKinds('doctor');
    // Every object this suite labelled as the other machine's (live or expired) is counted; the older asp's is not.
    const twins = [...(await docker.listContainers([`${TEST_LABEL}=${TEST_ID}`])), ...(await docker.listVolumes([`${TEST_LABEL}=${TEST_ID}`]))].filter(
      (object) => object.labels[LABEL.supervisorHostId] !== undefined,
    ).length;
    expect(twins).toBeGreaterThanOrEqual(3);
    const text = await asp(['doctor'], env);
    const lines = text.stdout.split('\n').filter((line) => /^\S+\s+hostname /.test(line));
    expect(lines).toEqual([
      `note  hostname ${twins} object(s) on the daemon name this host (${os.hostname()}) but were made on another machine or in another container of that name: asp leaves them to their expiry, an older asp there takes ours for dead — give each machine (or container) its own host name`,
    ]);
    const json = await asp(['doctor', '--json'], env);
    const checks = (JSON.parse(json.stdout) as { checks: Array<{ name: string; ok: boolean; advisory?: boolean }> }).checks;
    expect(checks.find((check) => check.name === 'hostname')).toMatchObject({ ok: false, advisory: true });
    // The older asp's object of this suite's doctor run is a dead one of ours: the next reap takes it.
    await asp(['reap'], env);
  });
});
