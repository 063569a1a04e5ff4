import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labelFilter, ownershipLabels } from '../../src/backend/ownership-labels.js';
import { asp } from '../helpers/cli.js';
import { docker, dockerAvailable, leftovers } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';
import { spawnAsp, type SpawnedAsp } from '../helpers/spawn-asp.js';

/** Everything this suite makes outside asp carries this label, so afterAll can find it and nothing else. */
const TEST_LABEL = 'asp-test.crash-safety';
const TEST_ID = randomBytes(4).toString('hex');
const BASE_IMAGE = 'node:20-bookworm-slim';

const newRoot = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-crash-')), 'workspaces');
const dockerCli = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8' }).trim();
const repo = () => repoWith({ 'README.md': 'crash safety\n' });
const SLEEPING_STEP = 'wait=echo partial > $ASP_ARTIFACTS/partial.txt; sleep 600';

interface Started {
  cli: SpawnedAsp;
  taskId: string;
  runId: string;
  dir: string;
}

/** Starts `asp run --json` and resolves once its step runs (the container is up), with the ids from its log. */
async function startRun(root: string, extra: string[] = [], env: Record<string, string> = {}): Promise<Started> {
  const cli = spawnAsp(['run', '--repo', repo(), '--json', ...extra], { ASP_WORKSPACES: root, ...env });
  const [startLine] = await cli.waitForStderr(/\{[^\n]*"msg":"task [^"]+ starting"\}/);
  const { taskId, runId, workspace } = JSON.parse(startLine) as { taskId: string; runId: string; workspace: string };
  await cli.waitForStderr(/"msg":"step \w+: /);
  return { cli, taskId, runId, dir: workspace };
}

async function objectsOf(runId: string): Promise<{ containers: string[]; volumes: string[] }> {
  const [containers, volumes] = await Promise.all([docker.listContainers([`asp.run=${runId}`]), docker.listVolumes([`asp.run=${runId}`])]);
  return { containers: containers.map((container) => container.name), volumes: volumes.map((volume) => volume.name) };
}

function ownerRecord(dir: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(dir, '.asp-owner.json'), 'utf8')) as Record<string, unknown>;
}

function expectMarkedOrGone(dir: string): void {
  if (!existsSync(dir)) return;
  expect(existsSync(path.join(dir, 'repo'))).toBe(false);
  expect(ownerRecord(dir)).toMatchObject({ status: 'abandoned', reapedAt: expect.any(String) });
}

async function reapCli(root: string, ...flags: string[]): Promise<{ code: number | null; report: { items: Array<{ kind: string; runId: string; outcome: string }> } }> {
  const result = await asp(['reap', '--json', ...flags], { ASP_WORKSPACES: root });
  return { code: result.code, report: JSON.parse(result.stdout) };
}

describe('asp reap and asp workspaces: bad input', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['a bad --older-than for reap', ['reap', '--older-than', 'soon'], /--older-than "soon" is not an age/],
    ['a negative --older-than', ['reap', '--older-than', '-1h'], /--older-than "-1h" is not an age|unknown option/],
    ['a bad --older-than for prune', ['workspaces', 'prune', '--older-than', '7 days'], /--older-than "7 days" is not an age/],
    ['an unknown reap option', ['reap', '--force'], /unknown option '--force'/],
    ['an unknown workspaces subcommand', ['workspaces', 'rm'], /unknown command 'rm'/],
  ];

  it.each(cases)('rejects %s with exit 2 and one line', async (_what, args, message) => {
    const root = newRoot();
    const result = await asp(args, { ASP_WORKSPACES: root, DOCKER_HOST: 'unix:///tmp/asp-no-docker-here.sock' });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(root)).toBe(false);
  });

  it('still reaps host dirs when Docker does not answer, and exits 3 saying so in one line', async () => {
    const result = await asp(['reap'], { ASP_WORKSPACES: newRoot(), DOCKER_HOST: 'unix:///tmp/asp-no-docker-here.sock' });
    expect(result.code).toBe(3);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/does not answer.*host dirs were still reaped/);
  });
});

describe.skipIf(!dockerAvailable)('crash safety against the real Docker engine', () => {
  /** Objects asp must never take: unlabelled, named like asp's, damaged labels, another host's unexpired ones. */
  const strangers = { containers: [] as string[], volumes: [] as string[] };
  const runsStarted: string[] = [];

  beforeAll(() => {
    const label = `${TEST_LABEL}=${TEST_ID}`;
    const otherHost = ownershipLabels({
      taskId: 'other-host-task',
      runId: `other-${TEST_ID}`,
      supervisor: { host: `not-this-host-${TEST_ID}`, pid: 1, startTicks: 1 },
      expiresAt: new Date(Date.now() + 3_600_000),
      keep: false,
    });
    const labelArgs = (labels: Record<string, string>) => Object.entries(labels).flatMap(([key, value]) => ['--label', `${key}=${value}`]);
    strangers.containers.push(
      dockerCli('run', '-d', '--network', 'none', '--label', label, '--name', `asp-lookalike-${TEST_ID}`, BASE_IMAGE, 'sleep', '600'),
      dockerCli('create', '--network', 'none', '--label', label, BASE_IMAGE, 'true'),
      dockerCli('create', '--network', 'none', '--label', label, '--label', 'asp.managed=true', '--label', 'asp.supervisor=garbage', BASE_IMAGE, 'true'),
      dockerCli('create', '--network', 'none', '--label', label, ...labelArgs(otherHost), BASE_IMAGE, 'true'),
    );
    strangers.volumes.push(
      dockerCli('volume', 'create', '--label', label, `asp-ws-lookalike-${TEST_ID}`),
      dockerCli('volume', 'create', `asp-ws-unlabelled-${TEST_ID}`),
      dockerCli('volume', 'create', '--label', label, ...labelArgs(otherHost), `asp-ws-other-host-${TEST_ID}`),
    );
  });

  afterAll(async () => {
    // Whatever a failed test left of its runs goes first, then this suite's own strangers; then the leak check.
    for (const runId of runsStarted) {
      for (const container of await docker.listContainers([`asp.run=${runId}`])) await docker.removeContainer(container.id);
      for (const volume of await docker.listVolumes([`asp.run=${runId}`])) await docker.removeVolume(volume.name);
    }
    for (const id of strangers.containers) await docker.removeContainer(id);
    for (const name of strangers.volumes) await docker.removeVolume(name);
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  /** Like leftovers(), but without this suite's own asp-labelled strangers (damaged labels, another host's). */
  async function asLeftovers(): Promise<{ containers: string[]; volumes: string[] }> {
    const ours = (labels: Record<string, string>) => labels[TEST_LABEL] !== TEST_ID;
    const [containers, volumes] = await Promise.all([docker.listContainers(labelFilter()), docker.listVolumes(labelFilter())]);
    return { containers: containers.filter((c) => ours(c.labels)).map((c) => c.name), volumes: volumes.filter((v) => ours(v.labels)).map((v) => v.name) };
  }

  async function expectStrangersSurvive(): Promise<void> {
    const containers = dockerCli('ps', '-aq', '--no-trunc', '--filter', `label=${TEST_LABEL}=${TEST_ID}`).split('\n').filter(Boolean);
    expect(containers.sort()).toEqual([...strangers.containers].sort());
    const volumes = dockerCli('volume', 'ls', '-q').split('\n');
    expect(volumes).toEqual(expect.arrayContaining(strangers.volumes));
    expect(dockerCli('inspect', '-f', '{{.State.Running}}', strangers.containers[0] as string)).toBe('true');
  }

  async function start(root: string, extra: string[] = [], env: Record<string, string> = {}): Promise<Started> {
    const run = await startRun(root, extra, env);
    runsStarted.push(run.runId);
    return run;
  }

  it('leaves no container or volume of 10 SIGKILLed supervisors after asp reap, and marks their dirs', { timeout: 240_000 }, async () => {
    const root = newRoot();
    const killed: Started[] = [];
    for (let round = 0; round < 10; round += 1) {
      const run = await start(root, ['--step', SLEEPING_STEP]);
      expect((await objectsOf(run.runId)).containers).toHaveLength(1);
      run.cli.child.kill('SIGKILL');
      expect((await run.cli.exited).signal).toBe('SIGKILL');
      killed.push(run);
    }
    // Each later run's start sweep may already have taken earlier ones; asp reap takes the rest.
    const { code, report } = await reapCli(root);
    expect(code).toBe(0);
    expect(report.items.every((item) => killed.some((run) => run.runId === item.runId))).toBe(true);
    for (const run of killed) {
      expect(await objectsOf(run.runId)).toEqual({ containers: [], volumes: [] });
      expectMarkedOrGone(run.dir);
      // asp's own copy of the task (the run got as far as the sandbox), in .asp-host/: the copy in .asp/ comes at the end.
      expect(existsSync(path.join(run.dir, '.asp-host', 'task.json'))).toBe(true);
    }
    expect(await asLeftovers()).toEqual({ containers: [], volumes: [] });
    await expectStrangersSurvive();
  });

  it('reaps five supervisors SIGKILLed at once in one asp reap, concurrently', { timeout: 120_000 }, async () => {
    const root = newRoot();
    const runs = await Promise.all(Array.from({ length: 5 }, () => start(root, ['--step', SLEEPING_STEP])));
    for (const run of runs) run.cli.child.kill('SIGKILL');
    await Promise.all(runs.map((run) => run.cli.exited));
    const dry = await reapCli(root, '--dry-run');
    expect(dry.report.items.filter((item) => item.outcome === 'would-remove')).toHaveLength(15);
    expect((await objectsOf(runs[0]?.runId as string)).containers).toHaveLength(1);
    const { code, report } = await reapCli(root);
    expect(code).toBe(0);
    expect(report.items.map((item) => item.kind).sort()).toEqual([...Array(5).fill('container'), ...Array(5).fill('volume'), ...Array(5).fill('workspace')]);
    for (const run of runs) {
      expect(await objectsOf(run.runId)).toEqual({ containers: [], volumes: [] });
      expectMarkedOrGone(run.dir);
    }
    expect((await reapCli(root)).report.items).toEqual([]);
    expect(await asLeftovers()).toEqual({ containers: [], volumes: [] });
    await expectStrangersSurvive();
  });

  it('lets the next asp run sweep what a SIGKILLed supervisor left', { timeout: 120_000 }, async () => {
    const root = newRoot();
    const victim = await start(root, ['--step', SLEEPING_STEP]);
    victim.cli.child.kill('SIGKILL');
    await victim.cli.exited;
    expect((await objectsOf(victim.runId)).containers).toHaveLength(1);
    const next = await asp(['run', '--repo', repo(), '--step', 'quick=true'], { ASP_WORKSPACES: root });
    expect(next.code).toBe(0);
    expect(next.stderr).toMatch(/swept what dead runs left: 1 containers, 1 volumes, 1 workspace dirs/);
    expect(await objectsOf(victim.runId)).toEqual({ containers: [], volumes: [] });
    expectMarkedOrGone(victim.dir);
    await expectStrangersSurvive();
  });

  it('lets the next asp batch sweep what a SIGKILLed supervisor left', { timeout: 120_000 }, async () => {
    const root = newRoot();
    const victim = await start(root, ['--step', SLEEPING_STEP]);
    victim.cli.child.kill('SIGKILL');
    await victim.cli.exited;
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-crash-batch-'));
    const list = path.join(scratch, 'tasks.jsonl');
    writeFileSync(list, JSON.stringify({ repo: repo(), steps: [{ name: 'quick', run: 'true' }] }) + '\n');
    const batch = await asp(['batch', list, '--json'], { ASP_WORKSPACES: root, ASP_HOME: path.join(scratch, 'home'), CI: 'true' });
    expect(batch.code).toBe(0);
    expect(batch.stderr).toMatch(/swept what dead runs left: 1 containers, 1 volumes, 1 workspace dirs/);
    expect(await objectsOf(victim.runId)).toEqual({ containers: [], volumes: [] });
    expectMarkedOrGone(victim.dir);
  });

  it("never touches a live supervisor's task from a parallel asp reap, whatever the flags", { timeout: 120_000 }, async () => {
    const root = newRoot();
    const live = await start(root, ['--step', 'wait=sleep 5; echo done > $ASP_ARTIFACTS/done.txt']);
    for (const flags of [[], ['--all'], ['--all', '--older-than', '0']]) {
      const { code, report } = await reapCli(root, ...flags);
      expect(code).toBe(0);
      expect(report.items.filter((item) => item.runId === live.runId)).toEqual([]);
    }
    const { containers } = await objectsOf(live.runId);
    expect(containers).toHaveLength(1);
    expect(dockerCli('inspect', '-f', '{{.State.Running}}', containers[0] as string)).toBe('true');
    expect(existsSync(path.join(live.dir, 'repo'))).toBe(true);
    const { code } = await live.cli.exited;
    expect(code).toBe(0);
    expect(JSON.parse(live.cli.stdout())).toMatchObject({ status: 'passed', artifacts: expect.arrayContaining(['done.txt']) });
    expect(await objectsOf(live.runId)).toEqual({ containers: [], volumes: [] });
    await expectStrangersSurvive();
  });

  it('stops a container whose supervisor died at its own deadline (the runner backstop)', { timeout: 120_000 }, async () => {
    const root = newRoot();
    const orphan = await start(root, ['--step', 'forever=sleep 600', '--timeout', '4s']);
    orphan.cli.child.kill('SIGKILL');
    await orphan.cli.exited;
    const [container] = (await objectsOf(orphan.runId)).containers;
    // The deadline counts from the task start; the runner gives the host 5 s grace before acting itself.
    const deadline = Date.now() + 30_000;
    let state = dockerCli('inspect', '-f', '{{.State.Running}} {{.State.ExitCode}}', container as string);
    while (state.startsWith('true') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      state = dockerCli('inspect', '-f', '{{.State.Running}} {{.State.ExitCode}}', container as string);
    }
    expect(state).toBe('false 124');
    expect((await reapCli(root)).code).toBe(0);
    expect(await objectsOf(orphan.runId)).toEqual({ containers: [], volumes: [] });
  });

  describe.each(['SIGINT', 'SIGTERM'] as const)('%s during a step', (signal) => {
    it('stops, copies .asp/ out, writes the trace as interrupted, removes everything, exits 130', { timeout: 60_000 }, async () => {
      const root = newRoot();
      const run = await start(root, ['--step', SLEEPING_STEP]);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const sent = Date.now();
      run.cli.child.kill(signal);
      const { code, at } = await run.cli.exited;
      expect(code).toBe(130);
      expect(at - sent).toBeLessThan(15_000);
      const result = JSON.parse(run.cli.stdout()) as { status: string; exitCode: number; artifacts: string[]; steps: Array<{ status: string }> };
      expect(result).toMatchObject({ status: 'interrupted', exitCode: 130 });
      expect(result.steps[0]?.status).toBe('interrupted');
      expect(result.artifacts).toContain('partial.txt');
      const trace = JSON.parse(readFileSync(path.join(run.dir, '.asp', 'trace.json'), 'utf8')) as { trace: { metadata: Record<string, unknown> } };
      expect(trace.trace.metadata.exit_status).toBe('interrupted');
      expect(ownerRecord(run.dir)).toMatchObject({ status: 'interrupted', finishedAt: expect.any(String) });
      expect(existsSync(path.join(run.dir, 'repo'))).toBe(false);
      expect(await asLeftovers()).toEqual({ containers: [], volumes: [] });
    });
  });

  it('a second signal cuts a long copy-out short and removes everything at once', { timeout: 120_000 }, async () => {
    const root = newRoot();
    // 750 MB of artifacts: copying them out takes seconds, long enough to interrupt.
    const run = await start(root, ['--step', 'wait=for i in 1 2 3; do head -c 250000000 /dev/zero > $ASP_ARTIFACTS/big$i.bin; done; echo partial > $ASP_ARTIFACTS/partial.txt; sleep 600']);
    await waitFor(async () => existsSync(path.join(run.dir, '.asp-host', 'task.json')) && (await containerHas(run.runId, '/workspace/.asp/partial.txt')), 60_000);
    const sent = Date.now();
    run.cli.child.kill('SIGINT');
    await run.cli.waitForStderr(/stopping the task/);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    run.cli.child.kill('SIGINT');
    const { code, at } = await run.cli.exited;
    expect(code).toBe(130);
    expect(at - sent).toBeLessThan(8000);
    expect(run.cli.stderr()).toMatch(/copy-out cut short by a second interrupt/);
    expect(JSON.parse(run.cli.stdout())).toMatchObject({ status: 'interrupted' });
    expect(await objectsOf(run.runId)).toEqual({ containers: [], volumes: [] });
  });

  it('lists task dirs, keeps --keep tasks from automatic retention, and prunes with an archive', { timeout: 120_000 }, async () => {
    const root = newRoot();
    const finished = await asp(['run', '--repo', repo(), '--step', 'one=true', '--json'], { ASP_WORKSPACES: root });
    const kept = await asp(['run', '--repo', repo(), '--step', 'one=true', '--keep', '--json'], { ASP_WORKSPACES: root });
    expect([finished.code, kept.code]).toEqual([0, 0]);
    const finishedId = JSON.parse(finished.stdout).taskId as string;
    const keptResult = JSON.parse(kept.stdout) as { taskId: string; runId: string };
    runsStarted.push(keptResult.runId);

    const listed = await asp(['workspaces', 'ls', '--json'], { ASP_WORKSPACES: root });
    const rows = JSON.parse(listed.stdout).workspaces as Array<{ taskId: string; status: string; keep: boolean; bytes: number; ageMs: number }>;
    expect(rows.map((row) => [row.taskId, row.status, row.keep])).toEqual(
      expect.arrayContaining([
        [finishedId, 'passed', false],
        [keptResult.taskId, 'passed', true],
      ]),
    );
    expect(rows.every((row) => row.bytes > 0 && row.ageMs >= 0)).toBe(true);
    const table = await asp(['workspaces', 'ls'], { ASP_WORKSPACES: root });
    expect(table.stdout).toMatch(/^TASK\s+STATUS\s+AGE\s+SIZE/);

    // A retention of one second, applied by the next run's sweep: the finished dir goes, the kept one stays.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const next = await asp(['run', '--repo', repo(), '--step', 'one=true', '--json'], { ASP_WORKSPACES: root, ASP_RETENTION: '1s' });
    expect(next.code).toBe(0);
    expect(next.stderr).toContain('retention: removed 1 workspace dirs');
    expect(existsSync(path.join(root, finishedId))).toBe(false);
    expect(existsSync(path.join(root, keptResult.taskId, 'repo'))).toBe(true);
    expect((await objectsOf(keptResult.runId)).containers).toHaveLength(1);

    // Kept objects go only with --all, and the dir is then released to retention.
    expect((await reapCli(root)).report.items).toEqual([]);
    const all = await reapCli(root, '--all');
    expect(all.report.items.map((item) => item.kind).sort()).toEqual(['container', 'volume', 'workspace']);
    expect(await objectsOf(keptResult.runId)).toEqual({ containers: [], volumes: [] });
    expect(existsSync(path.join(root, keptResult.taskId, 'repo'))).toBe(false);

    const archiveDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-archive-')), 'out');
    const dry = await asp(['workspaces', 'prune', '--older-than', '0', '--dry-run'], { ASP_WORKSPACES: root });
    expect(dry.stdout).toMatch(/would prune 2 task dirs/);
    const pruned = await asp(['workspaces', 'prune', '--older-than', '0', '--archive', archiveDir, '--json'], { ASP_WORKSPACES: root });
    expect(pruned.code).toBe(0);
    expect(JSON.parse(pruned.stdout).items).toHaveLength(2);
    expect(readdirSync(archiveDir).sort()).toEqual([`${keptResult.taskId}.tar.gz`, `${JSON.parse(next.stdout).taskId}.tar.gz`].sort());
    expect(readdirSync(root)).toEqual([]);
  });
});

async function containerHas(runId: string, file: string): Promise<boolean> {
  const [container] = await docker.listContainers([`asp.run=${runId}`]);
  if (!container) return false;
  try {
    execFileSync('docker', ['exec', container.id, 'test', '-f', file]);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
