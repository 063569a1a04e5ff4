import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const main = path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs');

export interface SpawnedAsp {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stderr text matching `pattern`; rejects after `timeoutMs` or when the CLI exits first. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves when the CLI has exited, with its code or signal and how long it took after `since`. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Starts the built CLI without waiting for it, so a test can signal or SIGKILL it mid-task. */
export function spawnAsp(args: string[], env: Record<string, string | undefined> = {}): SpawnedAsp {
  const child = spawn(process.execPath, [main, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_HOST: process.env.DOCKER_HOST, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    for (const watcher of watchers) watcher();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, at: Date.now() })));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForStderr: (pattern, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const match = stderr.match(pattern);
          if (!match) return;
          done();
          resolve(match);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${pattern} on stderr within ${timeoutMs} ms:\n${stderr}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          watchers.delete(check);
        };
        watchers.add(check);
        void exited.then(() => {
          if (!watchers.has(check)) return;
          done();
          reject(new Error(`asp exited before ${pattern} appeared:\n${stderr}`));
        });
        check();
      }),
  };
}
