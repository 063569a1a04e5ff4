import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { LABEL } from '../../src/backend/ownership-labels.js';
import { asp } from '../helpers/cli.js';
import { docker, dockerAvailable, leftovers } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';
import { spawnAsp } from '../helpers/spawn-asp.js';

/**
 * The standby asp process a pool keeps (src/cli/standby-server.ts): `asp run` hands its run to it, and the run is
 * the same as run here: its arguments, directory, environment, output, exit code, Ctrl-C and clean-up.
 */
function scratch() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-standby-'));
  return { dir, env: { ASP_HOME: path.join(dir, 'home'), ASP_WORKSPACES: path.join(dir, 'ws'), CI: 'true' } };
}

const standbyDir = (home: string) => path.join(home, 'pools', 'standby');

/** The pids of the standbys listening under `home` (each socket is named by its pid). */
function standbys(home: string): number[] {
  try {
    return readdirSync(standbyDir(home))
      .filter((name) => name.endsWith('.sock'))
      .map((name) => Number(name.replace(/\.sock$/, '')));
  } catch {
    return [];
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Which process ran a task: the supervisor pid its workspace's owner record names. */
function ranBy(workspace: string): number {
  const owner = JSON.parse(readFileSync(path.join(workspace, '.asp-owner.json'), 'utf8')) as { supervisor: string };
  return Number(owner.supervisor.split('/')[1]);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function claimedContainers(): Promise<string[]> {
  return (await docker.listContainers([`${LABEL.managed}=true`])).map((container) => container.name).filter((name) => name.startsWith('asp-claimed-'));
}

describe.skipIf(!dockerAvailable)('a pool’s standby asp process, against the real Docker engine', () => {
  const homes: Array<Record<string, string>> = [];
  afterEach(async () => {
    for (const env of homes.splice(0)) await asp(['pool', 'down'], env);
  });
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  async function poolUp() {
    const { dir, env } = scratch();
    homes.push(env);
    const up = await asp(['pool', 'up', '--size', '1', '--ttl', '5m', '--json'], env);
    expect(up.code, up.stderr).toBe(0);
    expect(JSON.parse(up.stdout)).toMatchObject({ ready: 1, standby: 1 });
    const [pid] = standbys(env.ASP_HOME);
    expect(pid).toBeGreaterThan(0);
    return { dir, env, standby: pid ?? 0 };
  }

  it('runs `asp run` as the client would: its directory, its environment (not the keeper’s), its output on its stdout and stderr, its exit code; then the next standby waits', async () => {
    const { dir, env, standby } = await poolUp();
    const repo = repoWith({ 'README.md': 'standby\n' });
    // Another workspace root than the keeper's, a variable only the client has, a relative --repo from the client's cwd.
    const workspaces = path.join(dir, 'client-ws');
    const run = await asp(
      ['run', '--repo', '.', '--task', 'served', '--env', 'ONLY_HERE', '--step', 'say=echo "out:$ONLY_HERE"; echo err-line >&2; test "$ONLY_HERE" = client', '--step', 'fail=exit 3', '--json'],
      { ...env, ASP_WORKSPACES: workspaces, ONLY_HERE: 'client' },
      { cwd: repo },
    );
    expect(run.code, run.stderr).toBe(1);
    const result = JSON.parse(run.stdout) as { status: string; workspacePath: string; failedStep: { step: string; exitCode: number } };
    expect(result.status).toBe('failed');
    expect(result.failedStep).toMatchObject({ step: 'fail', exitCode: 3 });
    expect(path.dirname(result.workspacePath)).toBe(workspaces);
    // --json: step output on stderr, the log as JSON lines there too, the result alone on stdout.
    expect(run.stderr).toContain('[say] out:client');
    expect(run.stderr).toContain('[say] err-line');
    expect(run.stderr).toMatch(/"msg":"task task-\S+-served starting"/);
    expect(run.stdout.trim().split('\n')).toHaveLength(1);
    expect(ranBy(result.workspacePath)).toBe(standby);
    // One run each: that standby is gone, another took its place.
    await until('the served standby ended', () => !alive(standby));
    await until('the next standby listens', () => standbys(env.ASP_HOME).length === 1);
    expect(standbys(env.ASP_HOME)).not.toContain(standby);
    expect(await claimedContainers()).toEqual([]);
  }, 120_000);

  it('passes Ctrl-C on: the run stops and cleans up as it would here (exit 130); a client killed outright is an interrupt too', async () => {
    const { env } = await poolUp();
    const repo = repoWith({ 'README.md': 'standby\n' });
    const interrupted = spawnAsp(['run', '--repo', repo, '--task', 'ctrl-c', '--step', 'long=sleep 60'], env);
    await interrupted.waitForStderr(/step long: sleep 60/);
    interrupted.child.kill('SIGINT');
    const ended = await interrupted.exited;
    expect(ended.code, interrupted.stderr()).toBe(130);
    expect(interrupted.stderr()).toMatch(/interrupted/);
    expect(await claimedContainers()).toEqual([]);

    await until('the next standby listens', () => standbys(env.ASP_HOME).length === 1);
    const [standby] = standbys(env.ASP_HOME);
    const killed = spawnAsp(['run', '--repo', repo, '--task', 'killed', '--step', 'long=sleep 60'], env);
    await killed.waitForStderr(/step long: sleep 60/);
    expect(await claimedContainers()).toHaveLength(1);
    killed.child.kill('SIGKILL');
    await killed.exited;
    // Nobody reads its output now: the standby stops the run, removes its sandbox, and ends.
    await until('the killed client’s sandbox is gone', async () => (await claimedContainers()).length === 0, 20_000);
    await until('its standby ended', () => !alive(standby ?? 0), 20_000);
  }, 120_000);

  it('is not used by another node’s flags, by ASP_STANDBY=0, or from a directory others can enter: the run is then local', async () => {
    const { env } = await poolUp();
    const repo = repoWith({ 'README.md': 'standby\n' });
    const cli = path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs');
    const local = await asp(['run', '--repo', repo, '--task', 'off', '--step', 'ok=true', '--json'], { ...env, ASP_STANDBY: '0' });
    expect(local.code, local.stderr).toBe(0);
    const [standby] = standbys(env.ASP_HOME);
    expect(ranBy((JSON.parse(local.stdout) as { workspacePath: string }).workspacePath)).not.toBe(standby);
    expect(standbys(env.ASP_HOME)).toEqual([standby]);

    // Node flags the standby was not started with: it declines (and ends), the client runs the task itself.
    const flagged = spawnSync(process.execPath, ['--no-warnings', cli, 'run', '--repo', repo, '--task', 'flagged', '--step', 'ok=true', '--json'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      encoding: 'utf8',
    });
    expect(flagged.status, flagged.stderr).toBe(0);
    expect(ranBy((JSON.parse(flagged.stdout) as { workspacePath: string }).workspacePath)).not.toBe(standby);

    await until('the next standby listens', () => standbys(env.ASP_HOME).length === 1);
    const [next] = standbys(env.ASP_HOME);
    chmodSync(standbyDir(env.ASP_HOME), 0o755);
    try {
      const open = await asp(['run', '--repo', repo, '--task', 'open', '--step', 'ok=true', '--json'], env);
      expect(open.code, open.stderr).toBe(0);
      expect(ranBy((JSON.parse(open.stdout) as { workspacePath: string }).workspacePath)).not.toBe(next);
      expect(alive(next ?? 0)).toBe(true);
    } finally {
      chmodSync(standbyDir(env.ASP_HOME), 0o700);
    }
  }, 120_000);

  it('refuses bad input: by hand, a garbage client, a stale socket', async () => {
    const byHand = await asp(['pool', 'standby'], scratch().env);
    expect(byHand.code).toBe(2);
    expect(byHand.stderr.trim().split('\n')).toHaveLength(1);
    expect(byHand.stderr).toMatch(/started by a pool keeper/);

    const { env } = await poolUp();
    const [standby] = standbys(env.ASP_HOME);
    // Not a frame asp speaks: the standby ends without running anything, the keeper starts another.
    await new Promise<void>((resolve) => {
      const socket = net.connect(path.join(standbyDir(env.ASP_HOME), `${standby}.sock`), () => socket.write('GET / HTTP/1.0\r\n\r\n'));
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
      socket.resume();
    });
    await until('the garbage client’s standby ended', () => !alive(standby ?? 0), 10_000);
    await until('the next standby listens', () => standbys(env.ASP_HOME).length === 1, 15_000);

    // A socket nobody listens on (what a standby killed outright leaves), with no pool up: skipped, removed, run here.
    const bare = scratch().env;
    mkdirSync(standbyDir(bare.ASP_HOME), { recursive: true, mode: 0o700 });
    const stale = path.join(standbyDir(bare.ASP_HOME), '4000000.sock');
    const listener = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`]);
    expect(listener.status).toBe(0);
    expect(existsSync(stale)).toBe(true);
    const repo = repoWith({ 'README.md': 'standby\n' });
    const run = await asp(['run', '--repo', repo, '--task', 'stale', '--step', 'ok=true', '--json'], bare);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(stale)).toBe(false);
  }, 120_000);
});
