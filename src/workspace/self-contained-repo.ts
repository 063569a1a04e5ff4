import { closeSync, constants, lstatSync, openSync, readdirSync, readSync, realpathSync, type Stats } from 'node:fs';
import path from 'node:path';
import { AspError } from '../core/asp-error.js';

/**
 * A local repository asp is asked to run must hold everything it serves. git lets a repository borrow from
 * elsewhere on the host: `objects/info/alternates` (or `http-alternates`) names other object stores, a ref may be a
 * symlink into another repository's refs, `commondir` (a linked worktree) and a `.git` file put the whole
 * repository somewhere else, and a symlink under objects/ serves another repository's pack. A hostile repository
 * with alternates pointing at a private repository on the host and a ref linked to its branch hands that private
 * history to the sandbox: through upload-pack with --depth or --filter, and a plain local clone copies the
 * alternates file itself, leaking the host path. Such a source is refused before anything is made.
 * The check reads only names and file types; it never follows a link or opens what one points at.
 */
export function assertSelfContained(location: string, display: string): void {
  // Every place git might take the repository from is checked, not just the first that looks like one: git's own
  // test is stricter (a valid HEAD, refs/ and objects/), so a decoy `.git` that passes ours but not git's would
  // have git clone the hostile bare repository beside it while the check looked at the decoy.
  for (const found of gitDirCandidates(location)) checkGitDir(found, display);
}

function checkGitDir(found: GitDir, display: string): void {
  const refuse = (what: string, hint: string) => new AspError('BAD_INPUT', `repository ${display} reaches outside itself: ${what}`, hint);
  const yours = 'if it is your own repository, make a self-contained copy first; otherwise do not run it';
  if (found.kind === 'link') throw refuse('its .git is a symbolic link', `${yours} (pass the directory the link points at)`);
  if (found.kind === 'gitfile') throw refuse('its .git file puts the repository in another directory (a submodule or a linked worktree)', `${yours} (git clone it, and pass the clone)`);
  const gitDir = found.dir;
  const entry = (name: string) => lstatOrUndefined(path.join(gitDir, name));
  if (entry('commondir')) throw refuse('it has a commondir file (a linked worktree shares another repository)', 'pass the main working tree of the repository instead');
  for (const name of ['HEAD', 'packed-refs', 'objects', 'refs', 'reftable']) {
    if (entry(name)?.isSymbolicLink()) throw refuse(`its ${name} is a symbolic link`, `${yours} (replace the link with the real ${name})`);
  }
  for (const name of ['objects/info/alternates', 'objects/info/http-alternates']) {
    if (entry(name)) throw refuse(`${name} borrows objects from another repository`, `${yours} (git repack -a -d, then delete ${name})`);
  }
  for (const dir of ['refs', 'reftable', 'objects']) {
    const link = firstSymlink(path.join(gitDir, dir));
    if (link) throw refuse(`${dir}/${path.relative(path.join(gitDir, dir), link)} is a symbolic link`, `${yours} (replace the link with a plain ${dir === 'objects' ? 'file' : 'ref'})`);
  }
}

type GitDir = { kind: 'dir'; dir: string } | { kind: 'gitfile' } | { kind: 'link' };

/**
 * Every place git may find the repository of a local path, in git clone's own order (`<path>/.git`, `<path>`,
 * `<path>.git/.git`, `<path>.git`), each that looks like one: the check looks at all of them, so whichever git
 * settles on has been checked.
 */
function gitDirCandidates(location: string): GitDir[] {
  // The path itself is the user's: a link there is followed. Links inside the repository are not.
  let root: string;
  try {
    root = realpathSync(location);
  } catch {
    return []; // not there at all: git says so, in its own words
  }
  const found: GitDir[] = [];
  for (const candidate of [path.join(root, '.git'), root, `${root}.git/.git`, `${root}.git`]) {
    const info = lstatOrUndefined(candidate);
    if (!info) continue;
    if (info.isSymbolicLink()) found.push({ kind: 'link' });
    else if (info.isFile() && isGitFile(candidate)) found.push({ kind: 'gitfile' });
    else if (info.isDirectory() && lstatOrUndefined(path.join(candidate, 'HEAD')) && (lstatOrUndefined(path.join(candidate, 'objects')) || lstatOrUndefined(path.join(candidate, 'commondir')))) {
      found.push({ kind: 'dir', dir: candidate });
    }
  }
  return found;
}

function isGitFile(file: string): boolean {
  // Only the first bytes: a `.git` file is one `gitdir: <path>` line, and a hostile one may be huge.
  const head = Buffer.alloc(8);
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    return readSync(fd, head, 0, head.length, 0) === head.length && head.toString('latin1') === 'gitdir: ';
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The first symlink found walking `dir` (without following any), or undefined. */
function firstSymlink(dir: string): string | undefined {
  const pending = [dir];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    let children;
    try {
      children = readdirSync(next, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const child of children) {
      const full = path.join(next, child.name);
      if (child.isSymbolicLink()) return full;
      if (child.isDirectory()) pending.push(full);
    }
  }
  return undefined;
}

function lstatOrUndefined(file: string): Stats | undefined {
  try {
    return lstatSync(file);
  } catch {
    return undefined;
  }
}
