/**
 * A step's `"reports"` (globs under the repository: `test-results/*.xml`) copied into `.asp/reports/<step>/` after
 * the step, so the host reads them from the copied-out `.asp/` like any artifact. The repository is the step's
 * tree: the copy runs as the step user (a node child of the runner's own binary, no shell needed), never as the
 * runner, and takes regular files only: no link is followed, no FIFO opened, bounded in files, bytes and time.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { SANDBOX_ARTIFACTS_DIR, SANDBOX_REPO_DIR } from '../src/protocol/messages.js';
import { asStepUser } from './step-user.js';

export const REPORT_COPY_LIMITS = { files: 64, fileBytes: 8 * 1024 * 1024, totalBytes: 32 * 1024 * 1024, timeMs: 10_000 } as const;

/**
 * Whether `name` matches one path segment of a glob (`*` any run, `?` one character): the two-pointer match, at most
 * pattern × name steps and never exponential, whatever the pattern (a regex of `*a*a*a…c` backtracks without bound). Its
 * source runs in the copy's child, so it uses nothing outside itself.
 */
export function globMatch(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === name[n])) {
      p++;
      n++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      resume = n;
    } else if (star >= 0) {
      p = star + 1;
      n = ++resume;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * Runs in the child, as the step user: argv is the repository, the destination, the globs (JSON) and the limits
 * (JSON). Prints one line per file it did not copy; copies each match as its path with `/` made `__`.
 */
const COPY_SCRIPT = String.raw`
const fs = require('node:fs');
const path = require('node:path');
const [repo, dest, globsJson, limitsJson] = process.argv.slice(1);
const globs = JSON.parse(globsJson);
const limits = JSON.parse(limitsJson);
const say = (line) => process.stdout.write(line.slice(0, 300) + '\n');
const globMatch = ${globMatch.toString()};
const found = new Set();
const walk = (dir, segments, relative) => {
  const [segment, ...rest] = segments;
  let names;
  if (/[*?]/.test(segment)) {
    try { names = fs.readdirSync(dir).filter((name) => globMatch(segment, name) && !name.startsWith('.')).sort(); } catch { return; }
  } else names = [segment];
  for (const name of names) {
    const full = path.join(dir, name);
    let info;
    try { info = fs.lstatSync(full); } catch { continue; }
    const rel = relative ? relative + '/' + name : name;
    if (rest.length) { if (info.isDirectory()) walk(full, rest, rel); }
    else if (info.isFile()) found.add(rel);
    else if (info.isSymbolicLink()) say(rel + ': a link, not copied');
  }
};
for (const glob of globs) walk(repo, glob.split('/'), '');
fs.mkdirSync(dest, { recursive: true });
let files = 0;
let total = 0;
for (const rel of [...found].sort()) {
  if (files >= limits.files) { say('more than ' + limits.files + ' report files: the rest not copied'); break; }
  let fd;
  try { fd = fs.openSync(path.join(repo, rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK); } catch (error) { say(rel + ': ' + error.code); continue; }
  try {
    const info = fs.fstatSync(fd);
    if (!info.isFile()) { say(rel + ': not a regular file'); continue; }
    if (info.size > limits.fileBytes) { say(rel + ': ' + info.size + ' bytes, more than ' + limits.fileBytes + ': not copied'); continue; }
    if (total + info.size > limits.totalBytes) { say(rel + ': the reports pass ' + limits.totalBytes + ' bytes in all: not copied'); continue; }
    const buffer = Buffer.alloc(info.size);
    const read = fs.readSync(fd, buffer, 0, info.size, 0);
    fs.writeFileSync(path.join(dest, rel.replace(/\//g, '__')), buffer.subarray(0, read), { flag: 'wx' });
    files += 1;
    total += read;
  } catch (error) { say(rel + ': ' + (error.code || error.message)); } finally { fs.closeSync(fd); }
}
`;

/** Copies the step's reports; resolves with one warning line per file not copied (or the copy failing). */
export async function copyStepReports(step: { name: string; reports?: string[] | undefined }): Promise<string[]> {
  if (!step.reports?.length) return [];
  const dest = path.join(SANDBOX_ARTIFACTS_DIR, 'reports', step.name);
  const child = spawn(
    process.execPath,
    ['-e', COPY_SCRIPT, SANDBOX_REPO_DIR, dest, JSON.stringify(step.reports), JSON.stringify(REPORT_COPY_LIMITS)],
    asStepUser({ cwd: SANDBOX_REPO_DIR, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } }),
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out = (out + chunk.toString('utf8')).slice(0, 16 * 1024)));
  child.stderr.on('data', (chunk: Buffer) => (err = (err + chunk.toString('utf8')).slice(-2048)));
  const timer = setTimeout(() => child.kill('SIGKILL'), REPORT_COPY_LIMITS.timeMs);
  const code = await new Promise<number | null>((resolve) => {
    child.on('error', () => resolve(null));
    child.on('close', (exit) => resolve(exit));
  });
  clearTimeout(timer);
  const lines = out
    .split('\n')
    .filter(Boolean)
    .slice(0, 20)
    .map((line) => `reports of step "${step.name}": ${line}`);
  if (code !== 0)
    lines.push(`reports of step "${step.name}" not copied: ${code === null ? `killed after ${REPORT_COPY_LIMITS.timeMs} ms` : `the copy exited ${code}: ${err.trim().split('\n').pop() ?? ''}`}`);
  return lines;
}
