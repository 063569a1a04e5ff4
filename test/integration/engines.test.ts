import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labelFilter } from '../../src/backend/ownership-labels.js';
import { DEFAULT_BASE_IMAGE } from '../../src/docker/sandbox-image.js';
import type { DockerPort } from '../../src/docker/port.js';
import { keyValues } from '../fixtures/hostile/privilege-probe.js';
import { expectHardenedStep, PROBE_FACTS, PROBE_FORK } from '../fixtures/sandbox-probe.js';
import { asp, type CliRun } from '../helpers/cli.js';
import { docker, dockerAvailable } from '../helpers/docker.js';
import { helloRepo, repoWith } from '../helpers/repos.js';
import { canRunSecondDaemon, startSecondDaemon, type SecondDaemon } from '../helpers/second-daemon.js';
import { canRunSshServer, startSshServer } from '../helpers/ssh-server.js';
import { canRunPodman, startPodmanService } from '../helpers/podman-service.js';
import { egressRunArgs, getThroughProxy } from '../fixtures/egress-client.js';
import { serveBytes } from '../helpers/egress-servers.js';
import { imageContext } from '../../src/docker/sandbox-image.js';

/**
 * Issue 17: the same task on every engine this machine can run — the main dockerd under runc and under gVisor, and a
 * second dockerd that speaks only TLS with client certificates — through the CLI, so that each engine is found the
 * way a user's environment names it. On each: the hardening probe from inside, a real test suite, copy-out, a
 * deadline and reap, and nothing of asp's left on that engine afterwards.
 */
const mainRuntimes = dockerAvailable ? (await docker.info()).runtimes : [];
// CI registers runsc (scripts/enable-gvisor.sh): there, a missing runsc fails this suite instead of leaving gVisor untested.
const gvisor = mainRuntimes.includes('runsc') || process.env.CI === 'true';

interface Engine {
  env: Record<string, string>;
  docker: DockerPort;
  stop?: () => Promise<void>;
}

interface EngineCase {
  name: string;
  start: () => Promise<Engine>;
  /** Flags for every `asp run` on it. */
  runFlags: string[];
  /**
   * Under gVisor the pids cgroup counts gVisor's own threads, a sandbox past it dies instead of failing the fork, and
   * its /proc reports neither NoNewPrivs nor a pids.max: asp raises a low --pids (and says so), and the probe there
   * leaves out the fork test and those two facts.
   */
  gvisor: boolean;
  /** Podman: /run and /var/tmp, which it adds as writable tmpfs, must come out read-only. */
  podman?: boolean;
}

const mainEngine = (): Promise<Engine> => {
  const env: Record<string, string> = {};
  if (process.env.DOCKER_HOST) env.DOCKER_HOST = process.env.DOCKER_HOST;
  return Promise.resolve({ env, docker });
};

const ENGINES: EngineCase[] = [
  { name: 'Docker under runc', start: mainEngine, runFlags: [], gvisor: false },
  ...(gvisor ? [{ name: 'Docker under gVisor (--runtime runsc)', start: mainEngine, runFlags: ['--runtime', 'runsc'], gvisor: true }] : []),
  ...(canRunSecondDaemon
    ? [
        {
          name: 'Docker over TLS (a second dockerd with --tlsverify, found through DOCKER_TLS_VERIFY and DOCKER_CERT_PATH)',
          start: async (): Promise<Engine> => {
            const daemon: SecondDaemon = await startSecondDaemon({ tls: true });
            daemon.load([DEFAULT_BASE_IMAGE]);
            return { env: daemon.env, docker: daemon.docker, stop: () => daemon.stop() };
          },
          runFlags: [],
          gvisor: false,
        },
      ]
    : []),
  ...(canRunSshServer || process.env.CI === 'true'
    ? [
        {
          name: 'Docker over ssh:// (a local sshd; docker system dial-stdio on the far side, ASP_SSH_COMMAND with its key)',
          start: async (): Promise<Engine> => {
            const server = await startSshServer();
            return { env: { DOCKER_HOST: server.host, ASP_SSH_COMMAND: server.sshCommand }, docker, stop: () => server.stop() };
          },
          runFlags: [],
          gvisor: false,
        },
      ]
    : []),
  ...(canRunPodman || process.env.CI === 'true'
    ? [
        {
          name: "Podman 4.3 (its Docker-compatible service, asp's image loaded into its store)",
          start: async (): Promise<Engine> => {
            const podman = await startPodmanService();
            podman.load([imageContext().tag]);
            return { env: { DOCKER_HOST: podman.host }, docker: podman.docker, stop: () => podman.stop() };
          },
          runFlags: [],
          gvisor: false,
          podman: true,
        },
      ]
    : []),
];

interface RunJson {
  status: string;
  exitCode: number;
  workspacePath: string;
  taskId: string;
  steps: Array<{ name: string; status: string; exitCode: number | null }>;
  artifacts: string[];
  warnings: string[];
}

describe.skipIf(!dockerAvailable)('every engine: the same task, hardened the same way', () => {
  it('CI runs every engine of this suite: gVisor, the TLS daemon, ssh and Podman included', () => {
    if (process.env.CI === 'true') expect(ENGINES.map((engine) => engine.name)).toHaveLength(5);
    else expect(ENGINES.length).toBeGreaterThanOrEqual(1);
  });

  describe.each(ENGINES)('on $name', (engine) => {
    let started: Engine;
    /** The tasks run here: on the main daemon other suites run beside this one, so the leak check looks for these. */
    const tasks: string[] = [];
    const workspaces = mkdtempSync(path.join(os.tmpdir(), 'asp-engines-'));
    const cli = (args: string[]): Promise<CliRun> => asp(args, { ...started.env, ASP_WORKSPACES: workspaces });
    const run = async (args: string[]): Promise<{ cli: CliRun; result: RunJson }> => {
      const ran = await cli(['run', '--json', ...engine.runFlags, ...args]);
      let result: RunJson;
      try {
        result = JSON.parse(ran.stdout) as RunJson;
      } catch {
        throw new Error(`asp run printed no JSON (exit ${ran.code}): ${ran.stderr}`);
      }
      tasks.push(result.taskId);
      return { cli: ran, result };
    };

    beforeAll(async () => {
      started = await engine.start();
    }, 300_000);

    afterAll(async () => {
      if (!started) return;
      try {
        const [containers, volumes] = await Promise.all([started.docker.listContainers(labelFilter()), started.docker.listVolumes(labelFilter())]);
        const ours = (object: { labels: Record<string, string> }) => tasks.includes(object.labels['asp.task'] ?? '');
        expect(tasks.length).toBeGreaterThan(0);
        expect({ containers: containers.filter(ours).map((container) => container.name), volumes: volumes.filter(ours).map((volume) => volume.name) }).toEqual({ containers: [], volumes: [] });
      } finally {
        await started.stop?.();
      }
    }, 60_000);

    it('the hardening probe from inside: uid 1000, no capabilities, no new privileges, seccomp, only lo, a read-only root, the pids limit', async () => {
      const closed = `for dir in /run /var/tmp; do (: > "$dir/asp-probe") 2>/dev/null && say "write:$dir" written || say "write:$dir" refused; done\n`;
      // Before the fork test, which holds every pid until the step ends.
      const probe = PROBE_FACTS + closed + (engine.gvisor ? '' : PROBE_FORK);
      const { cli: ran, result } = await run(['--repo', repoWith({ 'probe.sh': probe }), '--step', 'probe=. ./probe.sh', '--pids', '64']);
      expect(result.exitCode, ran.stderr).toBe(0);
      const facts = keyValues(readFileSync(path.join(result.workspacePath, '.asp', 'hardening.txt'), 'utf8'));
      expectHardenedStep(facts, { noNewPrivsReported: !engine.gvisor });
      // Read-only as the rest of the root: Podman's own writable tmpfs there are replaced by read-only ones.
      expect([facts['write:/run'], facts['write:/var/tmp']]).toEqual(['refused', 'refused']);
      if (engine.gvisor) {
        expect(result.warnings).toContainEqual(expect.stringMatching(/^--pids 64 raised to 512 under runsc: /));
      } else {
        expect(facts.pids).toBe('64');
        expect(facts.fork).not.toBe('all-forked');
        expect(result.warnings).toEqual([]);
      }
    }, 300_000);

    it("a real test suite passes: the demo repository's own tests under node --test", async () => {
      const { cli: ran, result } = await run(['--repo', helloRepo(), '--step', 'tests=node --test test/']);
      expect(result.exitCode, ran.stderr).toBe(0);
      expect(result.steps).toEqual([expect.objectContaining({ name: 'tests', status: 'passed', exitCode: 0 })]);
      expect(ran.stderr).toMatch(/\[tests\] .*pass \d+/);
    }, 120_000);

    it('egress through the host (--allow-host): 4 MiB through the proxy intact, a host not on the list refused', async () => {
      const body = Buffer.alloc(4 * 1024 * 1024, 9);
      const server = await serveBytes(body);
      const port = server.port;
      try {
        const { cli: ran, result } = await run(egressRunArgs(port, [`get=${getThroughProxy(port)}; ${getThroughProxy(port, '--tunnel')}; ${getThroughProxy(port + 1)}`]));
        expect(result.exitCode, ran.stderr).toBe(0);
        const line = `GET http://127.0.0.1:${port}/blob: 200 bytes ${body.length} sha256 ${createHash('sha256').update(body).digest('hex')}`;
        expect(ran.stderr.split('\n').filter((entry) => entry.endsWith(line))).toHaveLength(2);
        expect(ran.stderr).toContain(`[get] [asp: egress to 127.0.0.1:${port + 1} refused:`);
      } finally {
        await server.close();
      }
    }, 120_000);

    it('copies out what a step wrote to $ASP_ARTIFACTS, and no symlink', async () => {
      const { result } = await run(['--repo', repoWith({ 'README.md': 'x\n' }), '--step', 'write=echo report > $ASP_ARTIFACTS/report.txt; ln -s /etc/passwd $ASP_ARTIFACTS/passwd']);
      expect(result.exitCode).toBe(0);
      expect(readFileSync(path.join(result.workspacePath, '.asp', 'report.txt'), 'utf8')).toBe('report\n');
      expect(existsSync(path.join(result.workspacePath, '.asp', 'passwd'))).toBe(false);
    }, 120_000);

    it('kills the sandbox at a step deadline: exit 124, the next step skipped', async () => {
      const started = Date.now();
      const { result } = await run([
        '--repo',
        repoWith({ 'README.md': 'x\n' }),
        '--pipeline',
        pipelineFile([
          { name: 'slow', run: 'sleep 60', timeout: '2s' },
          { name: 'after', run: 'true' },
        ]),
      ]);
      expect(Date.now() - started).toBeLessThan(60_000);
      expect(result.exitCode).toBe(124);
      expect(result.steps.map((step) => step.status)).toEqual(['timeout', 'skipped']);
    }, 120_000);

    it('asp reap removes a sandbox kept with --keep, on that engine', async () => {
      // An id of its own: task ids made from the time are shared by every task of that minute, and reap reports by name.
      const id = `engines-reap-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
      const { result } = await run(['--repo', repoWith({ 'README.md': 'x\n' }), '--step', 'a=true', '--keep', '--id', id]);
      expect(result.exitCode).toBe(0);
      const names = async () =>
        [...(await started.docker.listContainers(labelFilter())), ...(await started.docker.listVolumes(labelFilter()))].map((object) => object.name).filter((name) => name.includes(result.taskId));
      expect((await names()).length).toBe(2); // its container and its volume
      const reaped = await cli(['reap', '--all']);
      expect(reaped.code, reaped.stderr).toBe(0);
      expect(reaped.stdout).toContain(result.taskId);
      expect(await names()).toEqual([]);
    }, 120_000);

    it('asp doctor names the engine and how it was found, and checks what that engine needs', async () => {
      const doctor = await cli(['doctor', '--json']);
      const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ name: string; ok: boolean; detail: string }> }).checks;
      const check = checks.find((entry) => entry.name === 'docker');
      expect(check?.ok).toBe(true);
      if (engine.podman) expect(checks.find((entry) => entry.name === 'podman')).toMatchObject({ ok: true, detail: 'a hardened sandbox (Init, limits, seccomp, no network) started and ended' });
      if (engine.gvisor) expect(checks.find((entry) => entry.name === 'gvisor')).toMatchObject({ ok: true, detail: 'runsc registered with --network=none and --oci-seccomp: --runtime runsc works' });
      expect(check?.detail).toMatch(
        new RegExp(
          `^${engine.podman ? 'Podman' : 'Docker'} \\S+ \\(API [\\d.]+, linux/\\w+\\) at ${started.env.DOCKER_HOST ? started.env.DOCKER_HOST.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : 'unix:///var/run/docker.sock'} \\((DOCKER_HOST|the Docker socket)\\)`,
        ),
      );
    }, 60_000);

    if (engine.gvisor) {
      it('a step that starts more processes than gVisor allows ends the sandbox: the task fails, and no container, volume or runsc process of it is left', async () => {
        const storm = "sh -c 'i=0; while [ $i -lt 300 ]; do sleep 30 & i=$((i + 1)); done; wait'";
        const { result } = await run(['--repo', repoWith({ 'README.md': 'x\n' }), '--step', `storm=${storm}`]);
        expect(result.exitCode).toBe(1);
        expect(result.steps).toEqual([expect.objectContaining({ name: 'storm', status: 'failed' })]);
        const ours = [...(await started.docker.listContainers(labelFilter())), ...(await started.docker.listVolumes(labelFilter()))].filter((object) => object.labels['asp.task'] === result.taskId);
        expect(ours).toEqual([]);
        // gVisor's own processes (runsc-gofer, runsc-sandbox) name the container they serve: each left must serve a
        // container that still exists (other suites run runsc beside this one). They go within moments of the container.
        const orphans = (): string[] => {
          const live = new Set(execFileSync('docker', ['ps', '-q', '--no-trunc'], { encoding: 'utf8' }).split('\n').filter(Boolean));
          const processes = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
            .split('\n')
            .filter((line) => /^runsc-(gofer|sandbox)\b/.test(line));
          return processes.filter((line) => !(line.match(/\b[0-9a-f]{64}\b/g) ?? []).some((id) => live.has(id)));
        };
        const deadline = Date.now() + 10_000;
        while (orphans().length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
        expect(orphans()).toEqual([]);
      }, 180_000);
    }
  });

  describe.skipIf(!canRunPodman && process.env.CI !== 'true')('Podman without the rlimits this host allows (no default_ulimits)', () => {
    it('asp doctor fails the podman check (exit 3), saying what Podman needs', async () => {
      const podman = await startPodmanService({ ulimits: false });
      try {
        podman.load([imageContext().tag]);
        const doctor = await asp(['doctor', '--json'], { DOCKER_HOST: podman.host });
        expect(doctor.code).toBe(3);
        const check = (JSON.parse(doctor.stdout) as { checks: Array<{ name: string; ok: boolean; detail: string }> }).checks.find((entry) => entry.name === 'podman');
        expect(check?.ok).toBe(false);
        expect(check?.detail).toMatch(/^a hardened sandbox did not start: .+ — Podman needs catatonit for Init/);
        expect(await podman.docker.listContainers(labelFilter())).toEqual([]);
      } finally {
        await podman.stop();
      }
    }, 300_000);
  });

  describe.skipIf(!canRunSecondDaemon)('TLS: bad input and mismatches, each one line (exit 3)', () => {
    let daemon: SecondDaemon;
    beforeAll(async () => {
      daemon = await startSecondDaemon({ tls: true });
    }, 120_000);
    afterAll(async () => {
      await daemon?.stop();
    });
    const doctorLine = async (env: Record<string, string>): Promise<string> => {
      const ran = await asp(['reap', '--dry-run'], env);
      expect(ran.code).toBe(3);
      return ran.stderr.trim();
    };

    it('plain HTTP to the TLS port: says the daemon speaks TLS and which variables to set', async () => {
      expect(await doctorLine({ DOCKER_HOST: daemon.host })).toMatch(/speaks TLS and asp spoke plain HTTP — set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH/);
    });

    it("a CA that did not sign the daemon's certificate: a TLS failure naming DOCKER_CERT_PATH", async () => {
      const line = await doctorLine({ DOCKER_HOST: daemon.host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: daemon.certs?.otherCa ?? '' });
      expect(line).toMatch(/TLS with Docker at tcp:\/\/127\.0\.0\.1:\d+ failed \(\w+: .+\) — check DOCKER_CERT_PATH/);
    });

    it('no client certificate, to a daemon that verifies clients: refused, in one line', async () => {
      const line = await doctorLine({ DOCKER_HOST: daemon.host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: daemon.certs?.caOnly ?? '' });
      expect(line).toMatch(/^asp: error: cannot .*Docker at tcp:\/\/127\.0\.0\.1:\d+/);
      expect(line.split('\n')).toHaveLength(1);
    });

    it('DOCKER_TLS_VERIFY with no ca.pem where DOCKER_CERT_PATH points: bad input (exit 2), said in one line', async () => {
      const ran = await asp(['reap', '--dry-run'], { DOCKER_HOST: daemon.host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: mkdtempSync(path.join(os.tmpdir(), 'asp-no-certs-')) });
      expect(ran.code).toBe(2);
      expect(ran.stderr).toMatch(/^asp: error: DOCKER_TLS_VERIFY is set but .*\/ca\.pem is missing \(DOCKER_CERT_PATH\) — set DOCKER_CERT_PATH to the directory/);
    });
  });
});

function pipelineFile(steps: Array<{ name: string; run: string; timeout?: string }>): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-engines-pipeline-')), 'pipeline.json');
  writeFileSync(file, JSON.stringify({ steps }));
  return file;
}
