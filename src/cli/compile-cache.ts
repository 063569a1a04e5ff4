/**
 * V8's code cache for asp's own bundle (Node 20 has no module.enableCompileCache; that came in Node 22). The shipped
 * CLI is CommonJS chunks (scripts/post-build.mjs), and each chunk asp loads is compiled here with the bytes V8 made
 * of it the last time, instead of from its source: `asp run` spends about 30 ms less CPU at start (measured A/B, 12
 * runs each). The first run of a build writes the cache at exit; V8 refuses bytes that do not match the source or
 * itself (then they are written again), so a stale cache costs one ordinary compile, never wrong code.
 *
 * The cache is code asp runs, so it is read only from a directory the user alone owns and can write
 * (`${XDG_CACHE_HOME:-~/.cache}/asp/v8-<node>-<arch>`, mode 0700); anything else turns the cache off for the process. The sandbox
 * never sees it. ASP_COMPILE_CACHE=0 turns it off.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { isPrivateDir } from '../core/private-dir.js';

/** Files kept in the cache directory: a few builds' worth of chunks; the oldest go first. */
const MAX_ENTRIES = 256;

interface CompilingModule {
  exports: unknown;
  _compile(content: string, filename: string): unknown;
}

/**
 * Compiles every CommonJS file under `root` through the cache in `dir` (made private if missing). Returns the
 * directory in use, or undefined when the cache is off (ASP_COMPILE_CACHE=0, or no private directory to be had).
 */
export function installCompileCache(root: string, env: NodeJS.ProcessEnv = process.env, dir = defaultCacheDir(env)): string | undefined {
  if (env.ASP_COMPILE_CACHE === '0' || !privateDir(dir)) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- Module's typings leave out _compile, which Node's CommonJS loader calls for every file it loads
  const prototype = (Module as unknown as { prototype: CompilingModule }).prototype;
  const compile = prototype._compile;
  const within = root.endsWith(path.sep) ? root : root + path.sep;
  const fresh: Array<{ file: string; script: vm.Script }> = [];
  prototype._compile = function (this: CompilingModule, content: string, filename: string) {
    // A file with a dynamic import() (the Kubernetes client, an ES module package) is Node's to compile: on Node 20
    // a vm.Script cannot import() ("A dynamic import callback was not specified"), whatever its options say.
    if (!filename.startsWith(within) || content.includes('import(')) return compile.call(this, content, filename);
    // A hashbang is valid only at the very start of a script, and the wrapper comes first: kept as a comment.
    const source = content.startsWith('#!') ? `//${content.slice(2)}` : content;
    const file = path.join(dir, createHash('sha256').update(filename).update('\0').update(source).digest('hex').slice(0, 40));
    let cachedData: Buffer | undefined;
    try {
      cachedData = readFileSync(file);
    } catch {
      cachedData = undefined;
    }
    const script = new vm.Script(Module.wrap(source), { filename, cachedData });
    if (cachedData === undefined || script.cachedDataRejected === true) fresh.push({ file, script });
    // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- Module.wrap's source evaluates to the CommonJS wrapper function
    const wrapper = script.runInThisContext({ displayErrors: true }) as (exports: unknown, require: NodeJS.Require, module: unknown, filename: string, dirname: string) => unknown;
    return wrapper.call(this.exports, this.exports, createRequire(filename), this, filename, path.dirname(filename));
  };
  // Written at exit, when the functions the command ran are compiled too (a cache made at load holds only the top level).
  process.once('exit', () => {
    for (const { file, script } of fresh) writeAtomically(file, script.createCachedData());
    if (fresh.length) prune(dir);
  });
  return dir;
}

/** A cache, where caches go (XDG): not in ASP_HOME, which holds asp's state and nothing a command did not make. */
export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  const root = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(env.HOME || os.homedir(), '.cache');
  return path.join(root, 'asp', `v8-${process.version}-${process.arch}`);
}

/** The directory exists (or is made), is a real directory, and only this user can write it. */
function privateDir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    return false;
  }
  return isPrivateDir(dir);
}

function writeAtomically(file: string, data: Buffer): void {
  // Another asp may write the same entry at the same moment: each writes its own file and renames it into place.
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, data, { mode: 0o600 });
    renameSync(temporary, file);
  } catch {
    rmSync(temporary, { force: true });
  }
}

function prune(dir: string): void {
  try {
    const entries = readdirSync(dir);
    if (entries.length <= MAX_ENTRIES) return;
    const aged = entries.map((name) => ({ name, mtime: statSync(path.join(dir, name), { throwIfNoEntry: false })?.mtimeMs ?? 0 })).sort((a, b) => a.mtime - b.mtime);
    for (const entry of aged.slice(0, entries.length - MAX_ENTRIES)) rmSync(path.join(dir, entry.name), { force: true });
  } catch {
    // A cache that cannot be pruned is only larger.
  }
}
