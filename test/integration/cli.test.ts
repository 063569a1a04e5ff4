import { chmodSync, existsSync, readdirSync } from 'node:fs';
import { createServer as createNetServer, type Socket } from 'node:net';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { asp } from '../helpers/cli.js';
import { dockerAvailable, leftovers } from '../helpers/docker.js';
import { helloRepo } from '../helpers/repos.js';

const workspaces = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-cli-')), 'ws');

describe('asp CLI: bad input, before anything is made', () => {
  const cases: Array<[string, string[], number, RegExp]> = [
    ['a malformed --step', ['run', '--repo', '.', '--step', 'no-equals-sign'], 2, /--step "no-equals-sign" is not name=command/],
    ['a bad step name', ['run', '--repo', '.', '--step', 'a b=true'], 2, /--step #1 name must be letters/],
    ['a bad --memory', ['run', '--repo', '.', '--step', 'a=true', '--memory', 'lots'], 2, /--memory "lots" is not a size/],
    ['a bad --timeout', ['run', '--repo', '.', '--step', 'a=true', '--timeout', 'soon'], 2, /--timeout "soon" is not a duration/],
    ['a bad --cpus', ['run', '--repo', '.', '--step', 'a=true', '--cpus', 'many'], 2, /--cpus "many" is not a number/],
    ['a bad --pids', ['run', '--repo', '.', '--step', 'a=true', '--pids', '2.5'], 2, /--pids "2.5" is not a whole number/],
    ['a bad --id', ['run', '--repo', '.', '--step', 'a=true', '--id', 'UPPER CASE'], 2, /--id must match/],
    ['--step with --pipeline', ['run', '--repo', '.', '--step', 'a=true', '--pipeline', 'x.json'], 2, /--step and --pipeline both given/],
    ['a missing --repo', ['run', '--step', 'a=true'], 2, /required option '--repo/],
    ['an unknown option', ['run', '--repo', '.', '--frobnicate'], 2, /unknown option '--frobnicate'/],
    ['a credential in the URL', ['run', '--repo', 'https://user:secret@example.com/x.git', '--step', 'a=true'], 2, /contains credentials/],
    ['a missing repository', ['run', '--repo', '/nonexistent/repo', '--step', 'a=true'], 2, /not found: no such directory/],
    ['--approve with --deny', ['run', '--repo', '.', '--step', 'a=true', '--hitl', '--approve', '--deny'], 2, /--approve and --deny both given/],
    ['--draft without --pr', ['run', '--repo', '.', '--step', 'a=true', '--draft'], 2, /--draft without --pr/],
    ['--pr without a token', ['run', '--repo', '.', '--step', 'a=true', '--pr'], 2, /--pr needs a GitHub token/],
    ['a bad --branch', ['run', '--repo', '.', '--step', 'a=true', '--branch', 'a..b'], 2, /--branch must be a plain git branch name/],
    ['a bad --disk', ['run', '--repo', '.', '--step', 'a=true', '--disk', 'huge'], 2, /--disk "huge" is not a size/],
    ['approve of an unknown task', ['approve', 'no-such-task'], 2, /no task no-such-task under/],
    ['approve of a malformed id', ['approve', '../etc'], 2, /"..\/etc" is not a task id/],
  ];

  it.each(cases)('rejects %s with its exit code and one line', async (_what, args, code, message) => {
    const root = workspaces();
    const result = await asp(args, { ASP_WORKSPACES: root });
    expect(result.code).toBe(code);
    expect(result.stderr).toMatch(message);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(root) ? readdirSync(root) : []).toEqual([]);
  });

  it('answers --json errors with a JSON object on stdout', async () => {
    const result = await asp(['run', '--repo', '/nonexistent', '--step', 'a=true', '--json']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({ status: 'error', exitCode: 2, error: { code: 'REPO_NOT_FOUND' } });
  });

  it('exits 3 with a hint when Docker does not answer', async () => {
    const root = workspaces();
    const result = await asp(['run', '--repo', helloRepo(), '--json'], { ASP_WORKSPACES: root, DOCKER_HOST: 'unix:///tmp/asp-no-docker-here.sock' });
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/Docker at unix:\/\/\/tmp\/asp-no-docker-here.sock does not answer.*start the Docker daemon/);
    expect(JSON.parse(result.stdout).error.code).toBe('DOCKER_UNAVAILABLE');
    expect(readdirSync(root)).toEqual([]);
  });

  it('a daemon that accepts the connection and never answers: asp run fails at ASP_DOCKER_TIMEOUT, exit 3, one line, nothing made', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-hung-'));
    const socketPath = path.join(dir, 'docker.sock');
    const held: Socket[] = [];
    const server = createNetServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const root = workspaces();
      const started = Date.now();
      const result = await asp(['run', '--repo', helloRepo(), '--step', 'a=true'], { ASP_WORKSPACES: root, DOCKER_HOST: `unix://${socketPath}`, ASP_DOCKER_TIMEOUT: '1s' });
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result.code).toBe(3);
      const errors = result.stderr.split('\n').filter((line) => line.startsWith('asp: error:'));
      expect(errors).toEqual([
        `asp: error: cannot reach the Docker daemon: Docker at unix://${socketPath} accepted the connection and sent nothing for 1 s — the daemon is hung or overloaded: check \`docker info\` and its log; ASP_DOCKER_TIMEOUT=2m waits longer`,
      ]);
      expect(readdirSync(root)).toEqual([]);
    } finally {
      for (const socket of held) socket.destroy();
      server.close();
    }
  });

  it('ASP_DOCKER_TIMEOUT that is not a duration: bad input (exit 2) saying what to write', async () => {
    const result = await asp(['doctor'], { ASP_DOCKER_TIMEOUT: 'soon' });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^asp: error: ASP_DOCKER_TIMEOUT="soon" is not a duration of a second or more — use seconds \(30\) or a duration such as 2m\n$/);
  });

  // Root opens any socket, so the refusal is seen as another user: asp started as nobody, against the daemon's own socket.
  it.skipIf(!dockerAvailable || process.getuid?.() !== 0 || process.env.DOCKER_HOST)(
    'a socket the user may not open: permission denied and how to get it, not "does not answer" (exit 3)',
    async () => {
      const open = mkdtempSync(path.join(os.tmpdir(), 'asp-nobody-'));
      chmodSync(open, 0o777);
      const result = await asp(['reap', '--dry-run'], { HOME: open, ASP_HOME: path.join(open, 'home'), ASP_WORKSPACES: path.join(open, 'ws') }, { uid: 65534, gid: 65534 });
      expect(result.code).toBe(3);
      expect(result.stderr).toMatch(
        /^asp: error: cannot reach the Docker daemon: permission denied on unix:\/\/\/var\/run\/docker\.sock \(EACCES; the Docker socket\) — add your user to the socket's group \(for Docker: sudo usermod -aG docker \$USER/,
      );
      expect(result.stderr).not.toMatch(/does not answer/);
    },
  );

  it('reports an unreachable Docker in doctor with exit 3', async () => {
    const result = await asp(['doctor'], { DOCKER_HOST: 'unix:///tmp/asp-no-docker-here.sock' });
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(/FAIL\s+docker/);
  });
});

describe.skipIf(!dockerAvailable)('asp CLI against the real Docker engine', () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('prints one JSON result on stdout with --json, logs on stderr', async () => {
    const root = workspaces();
    const result = await asp(['run', '--repo', helloRepo(), '--task', 'json please', '--json'], { ASP_WORKSPACES: root });
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const parsed = JSON.parse(lines[0] as string);
    expect(parsed).toMatchObject({ status: 'passed', exitCode: 0, workspacePath: expect.stringContaining(root) });
    expect(parsed.taskId).toMatch(/^task-\d{8}-\d{4}-json-please$/);
    expect(parsed.steps).toHaveLength(4);
    expect(parsed.artifacts).toEqual(expect.arrayContaining(['planning.json', 'design.json', 'test_results.json', 'code_review.json', 'trace.json', 'result.json']));
    expect(parsed.tracePath).toBe(path.join(parsed.workspacePath, '.asp', 'trace.json'));
    // Logs are pino JSON lines on stderr; step output is there too, prefixed.
    expect(result.stderr).toContain('"msg":"task ');
    expect(result.stderr).toContain('[test] 3/3 tests passed');
  });

  it('works with a real user environment (EDITOR, GIT_ASKPASS and friends set)', async () => {
    const root = workspaces();
    const result = await asp(['run', '--repo', helloRepo(), '--step', 'a=true', '--json'], {
      ...process.env,
      EDITOR: 'vim',
      GIT_ASKPASS: '/bin/false',
      GIT_EDITOR: 'nano',
      ASP_WORKSPACES: root,
    });
    expect(result.stderr).not.toMatch(/not permitted/);
    expect(result.code).toBe(0);
  });

  it('exits 1 when a step fails and 124 past a deadline', async () => {
    const root = workspaces();
    const failed = await asp(['run', '--repo', helloRepo(), '--step', 'bad=exit 7', '--step', 'after=true'], { ASP_WORKSPACES: root });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/step bad: failed in .*exit 7/);
    expect(failed.stderr).toMatch(/step after: skipped/);
    const late = await asp(['run', '--repo', helloRepo(), '--step', 'slow=sleep 30', '--timeout', '2s'], { ASP_WORKSPACES: root });
    expect(late.code).toBe(124);
  });

  it('gives two runs of the same task in the same minute their own workspaces', async () => {
    const root = workspaces();
    const repo = helloRepo();
    const [first, second] = await Promise.all([
      asp(['run', '--repo', repo, '--task', 'same', '--step', 'a=true', '--json'], { ASP_WORKSPACES: root }),
      asp(['run', '--repo', repo, '--task', 'same', '--step', 'a=true', '--json'], { ASP_WORKSPACES: root }),
    ]);
    expect([first.code, second.code]).toEqual([0, 0]);
    const ids = [JSON.parse(first.stdout).taskId, JSON.parse(second.stdout).taskId];
    expect(new Set(ids).size).toBe(2);
  });

  it('refuses an --id that is already taken, without touching it', async () => {
    const root = workspaces();
    const repo = helloRepo();
    const first = await asp(['run', '--repo', repo, '--id', 'fixed-id', '--step', 'a=true'], { ASP_WORKSPACES: root });
    expect(first.code).toBe(0);
    const again = await asp(['run', '--repo', repo, '--id', 'fixed-id', '--step', 'a=true'], { ASP_WORKSPACES: root });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/task id "fixed-id" is already used/);
    expect(existsSync(path.join(root, 'fixed-id', '.asp', 'trace.json'))).toBe(true);
  });

  it('doctor finds Docker, the image and the disk', async () => {
    const result = await asp(['doctor', '--json']);
    expect(result.code).toBe(0);
    const checks = JSON.parse(result.stdout).checks as Array<{ name: string; ok: boolean }>;
    expect(checks.find((check) => check.name === 'docker')?.ok).toBe(true);
    expect(checks.find((check) => check.name === 'image')?.ok).toBe(true);
    expect(checks.find((check) => check.name === 'disk')).toBeDefined();
  });
});
