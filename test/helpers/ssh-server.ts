import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.js';
import { waitForServer } from './server-process.js';

/**
 * Debian's sshd on 127.0.0.1, with a host key and a client key made for it: an ssh:// Docker host for the tests,
 * where `docker system dial-stdio` runs as on any remote machine (and reaches this machine's daemon). Root only
 * (sshd's privilege separation); .ci/run installs openssh-server without starting its service.
 */
export interface SshServer {
  /** DOCKER_HOST for it. */
  host: string;
  /** ASP_SSH_COMMAND for it: the client key, no config file, no known_hosts to ask about. */
  sshCommand: string;
  stop(): Promise<void>;
}

export const SSHD = '/usr/sbin/sshd';
export const canRunSshServer = process.getuid?.() === 0 && existsSync(SSHD);

export async function startSshServer(): Promise<SshServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-sshd-'));
  const port = await freePort();
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'client')]);
  execFileSync('cp', [path.join(dir, 'client.pub'), path.join(dir, 'authorized_keys')]);
  const config = path.join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      '',
    ].join('\n'),
  );
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  await waitForServer(child, () => listening(port), { what: `sshd on 127.0.0.1:${port}`, timeoutMs: 20_000, everyMs: 100, log: () => log, stop });
  return {
    host: `ssh://root@127.0.0.1:${port}`,
    sshCommand: `ssh -i ${path.join(dir, 'client')} -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR`,
    stop,
  };
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}
