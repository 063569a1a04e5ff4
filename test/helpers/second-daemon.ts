import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { EngineAdapter } from '../../src/docker/engine-adapter.js';
import type { DockerPort } from '../../src/docker/port.js';

/**
 * A dockerd of its own beside the main one (ENVIRONMENT.md, "a second dockerd"): its own data root, exec root and
 * containerd, listening on a unix socket and on tcp://127.0.0.1:PORT. With `hide`, it runs in a mount namespace of
 * its own where each of those host directories is an empty tmpfs: a daemon on another machine, as far as the file
 * system goes, so anything asp bind-mounted from the host would arrive empty. Needs root (dockerd does).
 */
export interface SecondDaemon {
  /** DOCKER_HOST for it: tcp://127.0.0.1:PORT. */
  host: string;
  docker: DockerPort;
  /** The daemon's log so far, for a failing test's message. */
  log(): string;
  /** `docker` CLI against it. */
  cli(args: string[], input?: Buffer): string;
  /** Copies images from the main daemon into it (`docker save | docker load`). */
  load(tags: string[]): void;
  /** Stops dockerd and its containerd and deletes its data root. Idempotent. */
  stop(): Promise<void>;
}

export const canRunSecondDaemon = process.getuid?.() === 0 && commandExists('dockerd') && commandExists('unshare');

export async function startSecondDaemon(options: { hide?: string[] } = {}): Promise<SecondDaemon> {
  if (!canRunSecondDaemon) throw new Error('a second dockerd needs root, dockerd and unshare (run ../shared/tools/docker-engine-up as root first)');
  // Not under a hidden directory (the socket and data root must be reachable from both sides), and short enough for a unix socket path.
  const dir = mkdtempSync('/var/tmp/asp-dockerd-');
  const port = await freePort();
  const host = `tcp://127.0.0.1:${port}`;
  const dockerd = [
    'dockerd',
    `--data-root=${dir}/data`,
    `--exec-root=${dir}/exec`,
    `--pidfile=${dir}/pid`,
    `-H=unix://${dir}/sock`,
    `-H=${host}`,
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
  ];
  const hide = options.hide ?? [];
  for (const hidden of hide) if (dir.startsWith(hidden + path.sep) || hidden === '/') throw new Error(`cannot hide ${hidden}: the daemon's own directory ${dir} is under it`);
  const mounts = hide.map((hidden) => `mount -t tmpfs -o size=1m,mode=755 asp-hidden ${quote(hidden)}`);
  const script = [...mounts, `exec ${dockerd.map(quote).join(' ')}`].join(' && ');
  const child: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const append = (chunk: Buffer) => (log = (log + chunk.toString()).slice(-20_000));
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const docker = new EngineAdapter(host);
  const env = { ...process.env, DOCKER_HOST: host };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const containerd = readPid(path.join(dir, 'exec', 'containerd', 'containerd.pid'));
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    // dockerd stops its containerd on a clean exit; after a SIGKILL it does not.
    if (containerd !== undefined) killQuietly(containerd);
    // The overlay mounts were in the daemon's private namespace, gone with its last process.
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the second dockerd exited (${child.exitCode}) before it answered:\n${log}`);
    if (
      await docker.info().then(
        () => true,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the second dockerd did not answer on ${host} within 60 s:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  const cli = (args: string[], input?: Buffer) => execFileSync('docker', args, { env, input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).trim();
  return {
    host,
    docker,
    log: () => log,
    cli,
    load(tags) {
      for (const tag of tags) {
        const saved = execFileSync('docker', ['save', tag], { maxBuffer: 2 * 1024 * 1024 * 1024 });
        cli(['load', '-q'], saved);
      }
    },
    stop,
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function commandExists(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
