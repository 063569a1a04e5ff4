import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EngineAdapter } from '../../src/docker/engine-adapter.js';
import type { DockerPort } from '../../src/docker/port.js';
import { succeeds, waitForServer } from './server-process.js';

/**
 * Debian's Podman (4.3) serving its Docker-compatible API on a unix socket of its own (ENVIRONMENT.md, "Podman"):
 * `podman system service`, with a containers.conf that names catatonit as the init binary (Debian picks tini, which
 * Podman does not look for), fits the ulimits to this VM, and uses cgroupfs and a file events log (no systemd here).
 * Root only; .ci/run installs podman and catatonit.
 */
export interface PodmanService {
  host: string;
  docker: DockerPort;
  /** Copies images from the main Docker daemon into Podman's store (`docker save | podman load`), unless there. */
  load(tags: string[]): void;
  stop(): Promise<void>;
}

export const canRunPodman = process.getuid?.() === 0 && existsSync('/usr/bin/podman') && existsSync('/usr/bin/catatonit');

/** `ulimits: false` leaves default_ulimits out of containers.conf: Podman's own rlimits, which this VM refuses. */
export async function startPodmanService(options: { ulimits?: boolean } = {}): Promise<PodmanService> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-podman-'));
  const conf = path.join(dir, 'containers.conf');
  writeFileSync(
    conf,
    [
      '[containers]',
      ...(options.ulimits === false ? [] : ['default_ulimits = ["nofile=10000:10000", "nproc=10000:10000"]']),
      'init_path = "/usr/bin/catatonit"',
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      '',
    ].join('\n'),
  );
  const socket = path.join(dir, 'podman.sock');
  const env = { ...process.env, CONTAINERS_CONF: conf };
  const child = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const host = `unix://${socket}`;
  const docker = new EngineAdapter(host);
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  await waitForServer(child, () => succeeds(() => docker.info()), { what: `podman system service on ${host}`, timeoutMs: 30_000, log: () => log, stop });
  return {
    host,
    docker,
    load(tags) {
      for (const tag of tags) {
        const present = (() => {
          try {
            execFileSync('podman', ['image', 'exists', tag], { env, stdio: 'ignore' });
            return true;
          } catch {
            return false;
          }
        })();
        if (present) continue;
        const saved = execFileSync('docker', ['save', tag], { maxBuffer: 2 * 1024 * 1024 * 1024 });
        execFileSync('podman', ['load', '-q'], { env, input: saved, stdio: ['pipe', 'ignore', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
      }
    },
    stop,
  };
}
