import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from './ports.js';
import { succeeds, waitForServer } from './server-process.js';
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
  /** What a client needs in its environment to reach it: DOCKER_HOST, and with TLS DOCKER_TLS_VERIFY and DOCKER_CERT_PATH. */
  env: Record<string, string>;
  /** With TLS: the directories of PEM files made for it (ca.pem, cert.pem, key.pem of a client; a CA it does not trust). */
  certs?: { client: string; caOnly: string; otherCa: string } | undefined;
  docker: DockerPort;
  /** The daemon's log so far, for a failing test's message. */
  log(): string;
  /** `docker` CLI against it. */
  cli(args: string[], input?: Buffer): string;
  /** Copies images from the main daemon into it (`docker save | docker load`). */
  load(tags: string[]): void;
  /** Stops dockerd and its containerd and deletes its data root. Idempotent. */
  stop(): Promise<void>;
  /** Kills dockerd itself with SIGKILL, as a crash would (its containerd and containers are left as they are). It stays down until restart(). */
  crash(): Promise<void>;
  /** Stops dockerd with SIGTERM, as `systemctl stop docker` would, and waits for it to exit. It stays down until restart(). */
  terminate(): Promise<void>;
  /** Starts dockerd again after crash() or terminate(), in the same mount namespace, on the same data root; resolves once it answers. */
  restart(): Promise<void>;
  /** With dataRootSize: the free bytes of the data root's file system. */
  freeBytes(): number;
  /** With dataRootSize: takes up the data root's free space (a file beside the daemon's own) until `leave` bytes are free. */
  fill(leave: number): void;
  /** Gives back what fill() took. */
  unfill(): void;
  /** Processes still running under the daemon's directories (its containerd, the shims of its containers). */
  leftoverProcesses(): number[];
}

export const canRunSecondDaemon = process.getuid?.() === 0 && commandExists('dockerd') && commandExists('unshare');

export interface SecondDaemonOptions {
  hide?: string[];
  tls?: boolean;
  /** dockerd --live-restore: containers keep running while the daemon is down. */
  liveRestore?: boolean;
  /** The data root on a tmpfs of this size (e.g. "900m"): a daemon whose disk can fill. */
  dataRootSize?: string;
}

export async function startSecondDaemon(options: SecondDaemonOptions = {}): Promise<SecondDaemon> {
  if (!canRunSecondDaemon) throw new Error('a second dockerd needs root, dockerd and unshare (run ../shared/tools/docker-engine-up as root first)');
  // Not under a hidden directory (the socket and data root must be reachable from both sides), and short enough for a unix socket path.
  const dir = mkdtempSync('/var/tmp/asp-dockerd-');
  const port = await freePort();
  const host = `tcp://127.0.0.1:${port}`;
  const certs = options.tls ? makeCertificates(path.join(dir, 'pki')) : undefined;
  const tlsFlags = certs ? ['--tlsverify', `--tlscacert=${certs.server}/ca.pem`, `--tlscert=${certs.server}/cert.pem`, `--tlskey=${certs.server}/key.pem`] : [];
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
    ...(options.liveRestore ? ['--live-restore'] : []),
    ...tlsFlags,
  ];
  const hide = options.hide ?? [];
  for (const hidden of hide) if (dir.startsWith(hidden + path.sep) || hidden === '/') throw new Error(`cannot hide ${hidden}: the daemon's own directory ${dir} is under it`);
  const mounts = hide.map((hidden) => `mount -t tmpfs -o size=1m,mode=755 asp-hidden ${quote(hidden)}`);
  if (options.dataRootSize) mounts.push(`mkdir -p ${quote(`${dir}/data`)}`, `mount -t tmpfs -o size=${quote(options.dataRootSize)},mode=711 asp-data ${quote(`${dir}/data`)}`);
  // dockerd runs in a loop in one mount namespace, so restart() brings it back beside the containerd, the shims and the
  // overlay mounts it left: after it exits, the loop waits for a `go` file (restart) or a `halt` file (stop).
  const go = `${dir}/go`;
  const halt = `${dir}/halt`;
  const loop = `while :; do ${dockerd.map(quote).join(' ')}; while [ ! -e ${go} ] && [ ! -e ${halt} ]; do sleep 0.1; done; [ -e ${halt} ] && exit 0; rm -f ${go}; done`;
  const script = [...mounts, loop].join(' && ');
  const child: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const append = (chunk: Buffer) => (log = (log + chunk.toString()).slice(-20_000));
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const clientEnv: Record<string, string> = certs ? { DOCKER_HOST: host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs.client } : { DOCKER_HOST: host };
  const docker = EngineAdapter.fromEnvironment(clientEnv);
  const env = { ...process.env, ...clientEnv };

  /** The running dockerd's pid (the loop's child), from its pid file. */
  const dockerdPid = () => readPid(path.join(dir, 'pid'));
  const downed = async (signal: NodeJS.Signals): Promise<void> => {
    const pid = dockerdPid();
    if (pid === undefined || child.exitCode !== null) return;
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    for (let waited = 0; processAlive(pid); waited += 100) {
      if (waited > 30_000) process.kill(pid, 'SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // A SIGKILLed dockerd leaves its pid file; the next one must not be taken for it.
    rmSync(path.join(dir, 'pid'), { force: true });
  };

  // The data root's tmpfs is mounted in the daemon's namespace only: looked at and filled from in there.
  const inNamespace = (command: string[]) => execFileSync('nsenter', ['-t', String(child.pid), '-m', '--', ...command], { encoding: 'utf8' });
  const freeBytes = () => {
    if (!options.dataRootSize) throw new Error('freeBytes() needs a daemon started with dataRootSize');
    return Number(
      inNamespace(['df', '-B1', '--output=avail', `${dir}/data`])
        .trim()
        .split('\n')
        .pop(),
    );
  };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const containerd = readPid(path.join(dir, 'exec', 'containerd', 'containerd.pid'));
    writeFileSync(halt, '');
    if (child.exitCode === null && child.signalCode === null) {
      await downed('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    // dockerd stops its containerd on a clean exit; after a SIGKILL it does not.
    if (containerd !== undefined) killQuietly(containerd);
    // After a crash the shims of its containers run on until their containers end (a task's backstop ends one at its
    // deadline): wait for them a while, then end them, so nothing of this daemon outlives the suite.
    for (let round = 0; round < 30 && processesUnder(dir).length; round += 1) await new Promise((resolve) => setTimeout(resolve, 500));
    for (const pid of processesUnder(dir)) killQuietly(pid);
    // The overlay mounts were in the daemon's private namespace, gone with its last process.
    rmSync(dir, { recursive: true, force: true });
  };

  await waitForServer(child, () => succeeds(() => docker.ping()), { what: `the second dockerd on ${host}`, timeoutMs: 60_000, log: () => log, stop });

  const cli = (args: string[], input?: Buffer) => execFileSync('docker', args, { env, input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).trim();
  return {
    host,
    env: clientEnv,
    certs: certs ? { client: certs.client, caOnly: certs.caOnly, otherCa: certs.otherCa } : undefined,
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
    crash: () => downed('SIGKILL'),
    terminate: () => downed('SIGTERM'),
    async restart() {
      if (dockerdPid() !== undefined) throw new Error('the second dockerd is still running');
      // The containerd the old dockerd started may run on (after a SIGKILL, or with live-restore) holding its metadata
      // database's lock, and a new dockerd then starts a containerd of its own that waits on that lock for good. It
      // goes first, as a host's containerd service restarting would; the shims, and so the containers, outlive it.
      const containerd = readPid(path.join(dir, 'exec', 'containerd', 'containerd.pid'));
      if (containerd !== undefined && processAlive(containerd)) {
        killQuietly(containerd);
        for (let waited = 0; processAlive(containerd) && waited < 10_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      writeFileSync(go, '');
      await waitForServer(child, () => succeeds(() => docker.ping()), { what: `the restarted second dockerd on ${host}`, timeoutMs: 60_000, log: () => log, stop });
    },
    freeBytes,
    fill(leave) {
      const extra = freeBytes() - leave;
      if (extra > 0) inNamespace(['fallocate', '-l', String(extra), `${dir}/data/asp-test-filler-${Date.now()}`]);
    },
    unfill() {
      inNamespace(['sh', '-c', `rm -f ${quote(dir)}/data/asp-test-filler-*`]);
    },
    leftoverProcesses: () => processesUnder(dir),
  };
}

/** Pids whose command line names `dir` (a containerd or a shim started for a daemon of that directory). */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir)) pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/**
 * A CA, a server certificate for 127.0.0.1 and a client certificate it signed, made with openssl, as `dockerd
 * --tlsverify` and a client want them; plus a directory with the CA alone (no client certificate) and one with a CA
 * the daemon's certificate is not signed by.
 */
function makeCertificates(root: string): { server: string; client: string; caOnly: string; otherCa: string } {
  const dirs = { server: path.join(root, 'server'), client: path.join(root, 'client'), caOnly: path.join(root, 'ca-only'), otherCa: path.join(root, 'other-ca') };
  for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  const ca = (name: string) => {
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}-key.pem`, '-out', `${name}.pem`);
  };
  ca('asp-test-ca');
  ca('asp-other-ca');
  const signed = (name: string, ext: string, out: string) => {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', path.join(out, 'key.pem'), '-out', `${name}.csr`);
    writeFileSync(path.join(root, `${name}.ext`), ext);
    ssl(
      'x509',
      '-req',
      '-days',
      '2',
      '-in',
      `${name}.csr`,
      '-CA',
      'asp-test-ca.pem',
      '-CAkey',
      'asp-test-ca-key.pem',
      '-CAcreateserial',
      '-extfile',
      `${name}.ext`,
      '-out',
      path.join(out, 'cert.pem'),
    );
  };
  signed('127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n', dirs.server);
  signed('asp-client', 'extendedKeyUsage=clientAuth\n', dirs.client);
  for (const dir of [dirs.server, dirs.client, dirs.caOnly]) copyFileSync(path.join(root, 'asp-test-ca.pem'), path.join(dir, 'ca.pem'));
  copyFileSync(path.join(root, 'asp-other-ca.pem'), path.join(dirs.otherCa, 'ca.pem'));
  copyFileSync(path.join(dirs.client, 'cert.pem'), path.join(dirs.otherCa, 'cert.pem'));
  copyFileSync(path.join(dirs.client, 'key.pem'), path.join(dirs.otherCa, 'key.pem'));
  return dirs;
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
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
