import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

/**
 * Checks run on the host after a hostile task: are any of its processes still alive, did anything but plain
 * files and directories land on the host disk, did a file the task should never reach change.
 */

/** Pids of host processes whose command line contains `text`. The host sees every container's processes. */
export function hostProcesses(text: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', text]).toString().trim().split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** Everything under `dir` that is not a plain file or a directory (links, fifos, sockets, devices), by path. */
export function oddEntries(dir: string): string[] {
  const odd: string[] = [];
  const walk = (current: string) => {
    for (const name of readdirSync(current)) {
      const full = path.join(current, name);
      const stat = lstatSync(full);
      if (stat.isDirectory()) walk(full);
      else if (!stat.isFile()) odd.push(path.relative(dir, full));
    }
  };
  walk(dir);
  return odd;
}

/** A fingerprint of a file or a directory tree (names, sizes, mtimes, contents), to prove it was not touched. */
export function fingerprint(target: string): string {
  const hash = createHash('sha256');
  const visit = (current: string) => {
    const stat = lstatSync(current);
    hash.update(`${path.relative(target, current)}\0${stat.mode}\0${stat.size}\0${stat.mtimeMs}\0`);
    if (stat.isDirectory()) for (const name of readdirSync(current).sort()) visit(path.join(current, name));
    else if (stat.isFile()) hash.update(readFileSync(current));
  };
  visit(target);
  return hash.digest('hex');
}

/** Every file under `dir` read as text and joined: where a leaked secret would show up. */
export function allText(dir: string): string {
  if (!existsSync(dir)) return '';
  // latin1: every byte stays one character, so binary files (packs, bundles) are searched too.
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => readFileSync(path.join(entry.parentPath, entry.name), 'latin1'))
    .join('\n');
}
