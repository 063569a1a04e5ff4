import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runWatchingRss } from '../../bench/peak-rss.js';
import type { TaskResult } from '../../src/supervisor/run-task.js';
import { artifactBomb, artifactEscape, aspDirSwap } from '../fixtures/hostile/artifact-escape.js';
import { envProbe } from '../fixtures/hostile/env-probe.js';
import { gitConfigTrap, springTraps } from '../fixtures/hostile/git-config-trap.js';
import { uniqueSeconds } from '../fixtures/hostile/hostile-task.js';
import { networkProbe, type NetworkProbeResult } from '../fixtures/hostile/network-probe.js';
import { keyValues, privilegeProbe } from '../fixtures/hostile/privilege-probe.js';
import { protocolForger } from '../fixtures/hostile/protocol-forger.js';
import { FLOOD_BYTES, forkBomb, hiddenWorkspaceFiller, memoryHog, outputFlood, tmpFiller, workspaceFiller } from '../fixtures/hostile/resource-hogs.js';
import { detachedDaemon, detachedDaemonHoldingOutput, ignoresSigterm } from '../fixtures/hostile/runaway-processes.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { allText, fingerprint, hostProcesses, oddEntries } from '../helpers/host-checks.js';
import { artifact, run } from '../helpers/run.js';

const cli = path.resolve(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'main.js');
const aspDir = (result: TaskResult) => path.join(result.workspacePath, '.asp');
const warnings = (result: TaskResult) => result.warnings.join('\n');

/**
 * Each fixture of test/fixtures/hostile/ runs as a task against the real daemon. The task must fail or be
 * contained with a clear status, the host and the supervisor must be unharmed, and nothing may be left behind.
 * SECURITY.md maps every test here to the defence it proves.
 */
describe.skipIf(!dockerAvailable)('hostile repositories against the real Docker engine', () => {
  const settings = testSettings();

  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  describe('attacks on shared resources hit the container\'s limits, not the host', () => {
    it('a fork bomb stays under the pids limit and dies with the container at its deadline', async () => {
      const tag = uniqueSeconds().replace('.', '');
      let most = 0;
      const counter = setInterval(() => (most = Math.max(most, hostProcesses(`fork-bomb-${tag}`).length)), 100);
      const { result } = await run(settings, forkBomb(tag)).finally(() => clearInterval(counter));
      expect(result.exitCode).toBe(124);
      expect(result.error).toContain('step "bomb" passed its 4000 ms deadline');
      expect(most).toBeGreaterThan(5); // it did explode...
      expect(most).toBeLessThanOrEqual(64); // ...inside the container's 64 pids
      expect(hostProcesses(`fork-bomb-${tag}`)).toEqual([]);
    });

    it('a memory hog is killed by the memory limit: the step fails with 137', async () => {
      const { result } = await run(settings, memoryHog());
      expect(result.exitCode).toBe(1);
      expect(result.steps).toEqual([expect.objectContaining({ name: 'hog', status: 'failed', exitCode: 137 })]);
    });

    it('filling /tmp ends at the tmpfs size with "no space left"', async () => {
      const { result } = await run(settings, tmpFiller());
      expect(result.exitCode).toBe(1);
      expect(readFileSync(path.join(aspDir(result), 'dd.txt'), 'utf8')).toContain('No space left on device');
      expect(Number(readFileSync(path.join(aspDir(result), 'tmp-fill-bytes.txt'), 'utf8'))).toBeLessThanOrEqual(32 * 1024 ** 2);
    });

    it('filling the workspace is stopped by --disk long before the filler would stop by itself', async () => {
      const { result, output } = await run(settings, workspaceFiller());
      expect(result.exitCode).toBe(1);
      expect(result.steps).toEqual([expect.objectContaining({ name: 'fill-workspace', status: 'failed', exitCode: 28 })]);
      const { reason } = artifact<{ reason: string }>(result, 'fill-workspace.json');
      expect(reason).toMatch(/past its 67108864-byte disk limit/);
      // The limit is polled, not a quota: it overshoots by what the step writes between two looks (~0.5 s).
      const reached = Number(/grew to (\d+) bytes/.exec(reason)?.[1]);
      expect(reached).toBeLessThan(512 * 1024 ** 2);
      expect(output).not.toContain('without being stopped');
    });

    it('a file deleted while still open slips past --disk (known gap, SECURITY.md): the deadline bounds it and removing the volume frees it', async () => {
      const { result, output } = await run(settings, hiddenWorkspaceFiller(256));
      // What is true today, asserted so that the day the gap closes this test says so.
      expect(result.exitCode).toBe(0);
      expect(output).toContain('wrote 256 MiB through a deleted file');
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    });

    it('a 1 GiB flood on stdout is capped, and the supervisor stays under 200 MB', async () => {
      const root = mkdtempSync(path.join(os.tmpdir(), 'asp-flood-'));
      const flood = outputFlood();
      const step = flood.steps?.[0];
      const watched = await runWatchingRss(process.execPath, [cli, 'run', '--repo', flood.repo, '--json', '--step', `${step?.name}=${step?.run}`], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, ASP_WORKSPACES: path.join(root, 'ws'), ASP_HOME: path.join(root, 'home') },
      });
      expect(watched.code).toBe(0);
      expect(watched.samples).toBeGreaterThan(0);
      expect(watched.peakRssBytes).toBeLessThan(200 * 1000 ** 2);
      // What got through is the 10 MiB cap plus asp's own log lines; the rest was dropped inside the sandbox.
      expect(watched.stderrBytes).toBeLessThan(12 * 1024 ** 2);
      const result = JSON.parse(watched.stdoutTail) as TaskResult;
      expect(artifact<{ outputBytes: number; droppedBytes: number }>(result, 'flood.json')).toMatchObject({
        outputBytes: FLOOD_BYTES,
        droppedBytes: FLOOD_BYTES - 10 * 1024 ** 2,
      });
    });
  });

  describe('ways out of the container are closed', () => {
    it('reaches no network: no DNS, not the host\'s loopback, no public address, no raw sockets, no Docker socket', async () => {
      let connections = 0;
      const listener = net.createServer((socket) => {
        connections += 1;
        socket.destroy();
      });
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      const port = (listener.address() as net.AddressInfo).port;
      try {
        const { result } = await run(settings, networkProbe(port));
        expect(result.exitCode).toBe(0);
        const probes = Object.fromEntries(artifact<NetworkProbeResult[]>(result, 'network-probe.json').map((probe) => [probe.probe, probe]));
        expect(Object.values(probes).filter((probe) => probe.reached)).toEqual([]);
        expect(probes['dns lookup example.com (libc)']?.error).toMatch(/^(ENOTFOUND|EAI_AGAIN)$/);
        // 127.0.0.1 inside is the container's own loopback, where nothing listens: the host's ports are elsewhere.
        expect(probes[`tcp 127.0.0.1:${port} (host listener)`]?.error).toBe('ECONNREFUSED');
        expect(probes['tcp 127.0.0.1:2375 (docker)']?.error).toBe('ECONNREFUSED');
        expect(probes['tcp 203.0.113.1:80 (public)']?.error).toBe('ENETUNREACH');
        expect(probes['raw socket (AF_INET, SOCK_RAW, ICMP)']?.error).toBe('Operation not permitted');
        expect(probes['packet socket (AF_PACKET)']?.error).toBe('Operation not permitted');
        expect(probes['unix /var/run/docker.sock']?.error).toBe('ENOENT');
        expect(probes.interfaces?.error).toBe('lo');
        expect(connections).toBe(0);
      } finally {
        listener.close();
      }
    });

    it('cannot raise its privileges: setuid, sudo, mount, namespaces, /proc/sys, cgroups and /etc all refuse', async () => {
      const { result } = await run(settings, privilegeProbe());
      expect(result.exitCode).toBe(0);
      const facts = keyValues(readFileSync(path.join(aspDir(result), 'privilege.txt'), 'utf8'));
      const attempts = ['su', 'sudo', 'setuid-copy', 'mount', 'unshare', 'nsenter', 'chroot', 'mknod', 'proc-sys', 'sysrq', 'cgroup-limit', 'etc-passwd', 'docker-socket'];
      for (const name of attempts) expect(facts[name], name).toMatch(/^refused/);
      expect(facts).toMatchObject({ uid: '1000', CapEff: '0000000000000000', CapPrm: '0000000000000000', CapBnd: '0000000000000000', NoNewPrivs: '1', Seccomp: '2' });
    });

    it('finds no host secret anywhere it can look when none was let in', async () => {
      const secrets = { GITHUB_TOKEN: 'ghp-host-secret-7f3a', AWS_SECRET_ACCESS_KEY: 'aws-host-secret-91c2', LANGFUSE_SECRET_KEY: 'sk-lf-host-secret-55d0' };
      const { result, output } = await run(testSettings({ hostEnv: { ...process.env, ...secrets } }), envProbe());
      expect(result.exitCode).toBe(0);
      const found = readFileSync(path.join(aspDir(result), 'env-dump.txt'), 'utf8');
      expect(found).toContain(`ASP_TASK_ID=${result.taskId}`); // the dump did run and did read the environment
      const everything = `${allText(aspDir(result))}\n${output}`;
      for (const value of Object.values(secrets)) expect(everything).not.toContain(value);
    });
  });

  describe('what comes out of the sandbox is checked entry by entry', () => {
    it('keeps links, fifos, sockets and odd names inside: the host gets plain files and its canary stays untouched', async () => {
      const hostSettings = testSettings();
      const canary = mkdtempSync(path.join(os.tmpdir(), 'asp-canary-'));
      writeFileSync(path.join(canary, 'secret.txt'), 'host secret\n');
      const before = { canary: fingerprint(canary), passwd: fingerprint('/etc/passwd') };
      const { result } = await run(hostSettings, artifactEscape(canary));
      expect(result.exitCode).toBe(0);
      const text = warnings(result);
      for (const link of ['passwd', 'canary-file', 'canary-dir', 'dotdot', 'root', 'sub/up']) expect(text).toContain(`.asp/${link} (symlink entries are not allowed)`);
      expect(text).toContain('.asp/z-hard-link (link entries are not allowed)');
      expect(text).toContain('.asp/fifo (fifo entries are not allowed)');
      expect(text).toContain('escape-by-backslash (".." in path)');
      expect(oddEntries(hostSettings.workspacesRoot)).toEqual([]);
      expect(readdirSync(hostSettings.workspacesRoot)).toEqual([result.taskId]);
      const copied = readdirSync(aspDir(result));
      expect(copied).toEqual(expect.arrayContaining(['a-original.txt', '...', '..hidden', 'line\nbreak', 'mknod.txt']));
      expect(copied).not.toContain('socket');
      expect(readFileSync(path.join(aspDir(result), 'mknod.txt'), 'utf8')).toContain('Operation not permitted');
      expect({ canary: fingerprint(canary), passwd: fingerprint('/etc/passwd') }).toEqual(before);
    });

    it('refuses a .asp that was swapped for a link to /: the host keeps only its own files', async () => {
      const { result } = await run(settings, aspDirSwap());
      expect(result.exitCode).toBe(1);
      expect(warnings(result)).toContain('.asp/ (symlink entries are not allowed)');
      expect(readdirSync(aspDir(result)).sort()).toEqual(['events.jsonl', 'result.json', 'task.json', 'trace.json']);
    });

    it('drops what passes the size, count and depth caps, and still copies the rest', async () => {
      const { result } = await run(settings, artifactBomb());
      expect(result.exitCode).toBe(0);
      const text = warnings(result);
      expect(text).toContain('.asp/huge.bin (larger than 268435456 bytes)');
      expect(text).toContain('(more than 10000 entries)');
      expect(text).toContain('(nested too deep)');
      expect(result.warnings.length).toBeLessThanOrEqual(100);
      const copied = readdirSync(aspDir(result), { recursive: true }).map(String);
      expect(copied).not.toContain('huge.bin');
      expect(copied.length).toBeLessThanOrEqual(10_000);
      expect(copied.filter((name) => name.startsWith('many/')).length).toBeGreaterThan(9_000);
      expect(copied.some((name) => name.endsWith('/f'))).toBe(false);
    });

    it('cannot forge its verdict: lies written into the runner\'s stdout do not turn a failed step into a pass', async () => {
      const { result } = await run(settings, protocolForger());
      // The lies did arrive as protocol events (the attack is live; SECURITY.md: the trace's numbers are the sandbox's word)...
      expect(readFileSync(path.join(aspDir(result), 'events.jsonl'), 'utf8')).toContain('"model":"forged-model"');
      // ...but the verdict also needs the container's exit code, which the step cannot set.
      expect(result.exitCode).toBe(1);
      expect(result.status).toBe('failed');
      expect(result.steps).toEqual([expect.objectContaining({ name: 'liar', status: 'failed', exitCode: 3 })]);
      // A forged artifact path is a string in the trace, never a path the host opens.
      expect(oddEntries(result.workspacePath)).toEqual([]);
      // The forged artifacts stream is spoiled by the runner's own that follows it: .asp/ comes from the container.
      expect(result.warnings).toContain('artifacts stream unusable (a chunk after the end): copying .asp/ out of the container');
      expect(result.artifacts).not.toContain('forged.txt');
      expect(result.artifacts).toContain('liar.json');
    });
  });

  describe('host git never runs in a tree the sandbox wrote', () => {
    it('leaves fsmonitor, hooks, filters and diff drivers unsprung, and still brings the change back as a bundle', async () => {
      const markers = mkdtempSync(path.join(os.tmpdir(), 'asp-git-markers-'));
      const trap = gitConfigTrap(markers);
      // The control: ordinary git in a copy of this repository springs every trap, so silence below means something.
      expect(springTraps(trap.repo, markers)).toEqual(
        expect.arrayContaining(['source-fsmonitor', 'source-filter-clean', 'source-filter-smudge', 'source-diff-external', 'hook-post-checkout', 'hook-pre-commit']),
      );

      const { result } = await run(settings, trap);
      expect(result.exitCode).toBe(0);
      expect(readFileSync(path.join(aspDir(result), 'armed-config.txt'), 'utf8')).toMatch(/core\.fsmonitor=touch .*sandbox-fsmonitor/);
      expect(result.change).toMatchObject({ commits: 1 });
      expect(result.change?.stat).toContain('README.md');

      // The bundle is data: fetched into a clean clone, it carries the change and runs nothing.
      const check = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-trap-check-')), 'clone');
      execFileSync('git', ['clone', '-q', trap.repo, check]);
      execFileSync('git', ['-C', check, 'fetch', '-q', path.join(aspDir(result), 'change.bundle'), `${result.change?.branch}:incoming`]);
      expect(execFileSync('git', ['-C', check, 'show', 'incoming:README.md']).toString()).toContain('changed inside the sandbox');
      expect(readdirSync(markers)).toEqual([]);
    });
  });

  describe('no process outlives its task', () => {
    it('a step that ignores SIGTERM is killed with its container at the deadline: 124, the next step skipped', async () => {
      const seconds = uniqueSeconds();
      const started = Date.now();
      const { result } = await run(settings, ignoresSigterm(seconds));
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result.exitCode).toBe(124);
      expect(result.steps.map((step) => step.status)).toEqual(['timeout', 'skipped']);
      expect(hostProcesses(`sleep ${seconds}`)).toEqual([]);
    });

    it('a daemon that detaches with setsid and nohup dies with the container, and the step passes', async () => {
      const seconds = uniqueSeconds();
      const { result, output } = await run(settings, detachedDaemon(seconds));
      expect(result.exitCode).toBe(0);
      expect(output).toContain('[daemon] daemon started');
      expect(hostProcesses(`sleep ${seconds}`)).toEqual([]);
    });

    it('a daemon that keeps the step\'s output open does not hold the step: it ends when its shell does, and the daemon dies with the container', async () => {
      const seconds = uniqueSeconds();
      const { result, output } = await run(settings, detachedDaemonHoldingOutput(seconds));
      expect(result.exitCode).toBe(0);
      expect(output).toContain('[daemon] daemon started');
      expect(result.steps).toEqual([expect.objectContaining({ name: 'daemon', status: 'passed' })]);
      // The shell exits at once; the runner waits 2 s for the output to close, well inside the 5 s deadline.
      expect(result.steps[0]?.durationMs).toBeLessThan(4500);
      expect(hostProcesses(`sleep ${seconds}`)).toEqual([]);
    });
  });
});
