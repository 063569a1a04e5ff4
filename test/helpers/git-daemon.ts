import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gitIn } from './repos.js';

/** A real `git daemon` on 127.0.0.1 serving bare repositories with push enabled: the remote of the PR tests. */
export interface GitDaemon {
  root: string;
  port: number;
  url(owner: string, name: string): string;
  /** Creates `<owner>/<name>.git` as a bare copy of `source`. */
  publish(owner: string, name: string, source: string): string;
  stop(): Promise<void>;
}

export async function startGitDaemon(): Promise<GitDaemon> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'asp-gitd-'));
  const port = await freePort();
  const child: ChildProcess = spawn('git', ['daemon', '--reuseaddr', `--base-path=${root}`, '--export-all', '--enable=receive-pack', '--listen=127.0.0.1', `--port=${port}`, root], {
    stdio: 'ignore',
  });
  await waitForPort(port);
  return {
    root,
    port,
    url: (owner, name) => `git://127.0.0.1:${port}/${owner}/${name}.git`,
    publish(owner, name, source) {
      const target = path.join(root, owner, `${name}.git`);
      mkdirSync(path.dirname(target), { recursive: true });
      gitIn(root, 'clone', '--quiet', '--bare', source, target);
      return target;
    },
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill();
      }),
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`git daemon did not listen on ${port}`);
}
