import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const main = path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `asp` CLI as a user would, with a controlled environment. */
export function asp(args: string[], env: Record<string, string | undefined> = {}, options: { uid?: number; gid?: number; cwd?: string } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      // A private ASP_HOME unless the test names one: no test writes into the real ~/.asp.
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ASP_HOME: scratchHome(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Another user's asp (root only can start one): what that user may and may not open.
      ...options,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let home: string | undefined;
function scratchHome(): string {
  home ??= mkdtempSync(path.join(os.tmpdir(), 'asp-home-'));
  return home;
}
