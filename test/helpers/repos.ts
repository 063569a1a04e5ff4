import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { git, makeRepoFromDir } from '../../scripts/git-fixture.mjs';

const root = path.resolve(import.meta.dirname, '..', '..');

/** A fresh git repository with the bundled hello-repo example. */
export function helloRepo(): string {
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-repo-')), 'hello-repo');
  makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), dir);
  return dir;
}

/** A fresh git repository holding `files` (path → content). */
export function repoWith(files: Record<string, string | Buffer>): string {
  const source = mkdtempSync(path.join(os.tmpdir(), 'asp-src-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(source, name)), { recursive: true });
    writeFileSync(path.join(source, name), content);
  }
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-repo-')), 'repo');
  makeRepoFromDir(source, dir);
  return dir;
}

export function gitIn(dir: string, ...args: string[]): string {
  return git(dir, ...args);
}

/**
 * A clone of the original repository with a task's change bundle fetched into the branch `incoming`, as a reviewer
 * would check it: the bundle must apply on top of the base the repository already has.
 */
export function fetchBundle(repo: string, result: { workspacePath: string; taskId: string }): string {
  const check = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-bundle-')), 'check');
  execFileSync('git', ['clone', '-q', repo, check]);
  execFileSync('git', ['-C', check, 'fetch', '-q', path.join(result.workspacePath, '.asp', 'change.bundle'), `asp/${result.taskId}:incoming`]);
  return check;
}
