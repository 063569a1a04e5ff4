/** What the ASP agents see of the repository, and how the code agent changes it: only inside the repository. */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { valueAt } from '../src/core/record-guard.js';

/** Hooks and fsmonitor off, whatever a step wrote into .git/config (reliability; the host never runs git here). */
const GIT_SAFE = ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false'];
const SKIP_DIRS = new Set(['.git', 'node_modules', 'dist', 'build', '.venv', 'vendor', 'target']);
const MAX_FILES = 400;
const MAX_FILE_BYTES = 16 * 1024;
const MAX_CONTEXT_BYTES = 64 * 1024;

export function listFiles(root: string): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (files.length >= MAX_FILES) return;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!SKIP_DIRS.has(entry.name)) walk(full);
      } else if (entry.isFile()) files.push(path.relative(root, full));
    }
  };
  walk(root);
  return files;
}

/** The file list and the content of small text files, up to a total cap: what fits in a prompt. */
export function repoContext(root: string, prefer: string[] = []): string {
  const files = listFiles(root);
  const ordered = [...prefer.filter((file) => files.includes(file)), ...files.filter((file) => !prefer.includes(file))];
  let budget = MAX_CONTEXT_BYTES;
  const parts = [`Files (${files.length}${files.length >= MAX_FILES ? '+' : ''}):\n${files.join('\n')}`];
  for (const file of ordered) {
    const full = path.join(root, file);
    const size = lstatSync(full).size;
    if (size > MAX_FILE_BYTES || size > budget) continue;
    const content = readFileSync(full);
    if (content.includes(0)) continue;
    budget -= size;
    parts.push(`--- ${file}\n${content.toString('utf8')}`);
  }
  return parts.join('\n\n');
}

/** A path the code agent may write: relative, inside the repository, never into .git. */
export function safeRepoPath(root: string, file: string): string | undefined {
  if (typeof file !== 'string' || !file || path.isAbsolute(file) || file.includes('\0')) return undefined;
  const full = path.resolve(root, file);
  const relative = path.relative(root, full);
  if (!relative || relative.startsWith('..') || relative.split(path.sep)[0] === '.git') return undefined;
  return full;
}

export interface WrittenFile {
  path: string;
  bytes: number;
  sha256: string;
}

export function applyFiles(root: string, files: unknown): { written: WrittenFile[]; refused: string[] } {
  const written: WrittenFile[] = [];
  const refused: string[] = [];
  for (const item of Array.isArray(files) ? files : []) {
    const file = valueAt(item, 'path');
    const content = valueAt(item, 'content');
    const full = typeof file === 'string' ? safeRepoPath(root, file) : undefined;
    if (!full || typeof content !== 'string') {
      refused.push(String(file));
      continue;
    }
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, content);
    written.push({ path: path.relative(root, full), bytes: Buffer.byteLength(content), sha256: createHash('sha256').update(content).digest('hex') });
  }
  return { written, refused };
}

/** The working tree's change against HEAD, new files included. */
export function repoDiff(root: string): string {
  spawnSync('git', [...GIT_SAFE, 'add', '--intent-to-add', '--all'], { cwd: root });
  const diff = spawnSync('git', [...GIT_SAFE, 'diff', 'HEAD'], { cwd: root, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  return (diff.stdout ?? '').slice(0, MAX_CONTEXT_BYTES);
}
