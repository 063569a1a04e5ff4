// Turns a directory of files into a one-commit git repository, the same bytes every time
// (fixed author and dates). Used by the demo and by the test fixtures: the example ships as plain
// files inside this repository, and git cannot clone a subdirectory of another repository.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync } from 'node:fs';

const FIXED_ENV = {
  GIT_AUTHOR_NAME: 'asp demo',
  GIT_AUTHOR_EMAIL: 'demo@asp.invalid',
  GIT_COMMITTER_NAME: 'asp demo',
  GIT_COMMITTER_EMAIL: 'demo@asp.invalid',
  GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
  GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
  GIT_CONFIG_NOSYSTEM: '1',
};

export function git(cwd, ...args) {
  return execFileSync('git', ['-c', 'init.defaultBranch=main', '-c', 'core.hooksPath=/dev/null', ...args], {
    cwd,
    env: { ...process.env, ...FIXED_ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
    .toString()
    .trim();
}

/** Copies `sourceDir` to `destination` (replacing it) and commits it as the first commit of branch main. */
export function makeRepoFromDir(sourceDir, destination, message = 'initial commit') {
  rmSync(destination, { recursive: true, force: true });
  mkdirSync(destination, { recursive: true });
  cpSync(sourceDir, destination, { recursive: true, verbatimSymlinks: true });
  git(destination, 'init', '--quiet');
  git(destination, 'add', '--all');
  git(destination, 'commit', '--quiet', '--no-verify', '-m', message);
  return git(destination, 'rev-parse', 'HEAD');
}
