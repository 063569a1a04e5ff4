/**
 * asp-runtime-pack: makes the runtime that lets asp's runner work in any image (issue 16). Run once per daemon, as
 * root, in asp's own sandbox image (Debian bookworm + node + git) with an empty volume at `out`; the volume is then
 * mounted read-only at /opt/asp in task containers whose image may have no node, no git, no bash, or musl instead
 * of glibc. It holds node, git (and its exec path), GNU tar, chmod and a POSIX sh, every shared library they load,
 * and the glibc loader that loads them.
 *
 * How the programs find that loader: each packed program's PT_INTERP is rewritten to /opt/asp/lib/ld.so. There is
 * no patchelf in the image and no network to fetch it, and rewriting PT_INTERP in place is a few bytes (sandbox/
 * elf.ts) — but only in place: the new path must fit the space of the old one (28 bytes for
 * /lib64/ld-linux-x86-64.so.2, 26 for aarch64's /lib/ld-linux-aarch64.so.1). That is why the runtime's path is
 * fixed and short: it is always mounted at /opt/asp, and /opt/asp/lib/ld.so is 18 bytes.
 *
 * How the loader finds the libraries: glibc's loader, started through PT_INTERP, still searches the image's
 * /lib and /usr/lib (and reads its /etc/ld.so.cache), not the runtime. The runner sets LD_LIBRARY_PATH=/opt/asp/lib
 * for the runtime's own processes only (never for the task's commands, which must see the image's libraries);
 * DT_RUNPATH would avoid the variable but, like a longer PT_INTERP, needs room in the file that is not there.
 *
 * runtime.json is written last, by rename: a runtime without it is incomplete and must not be used.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ElfError, interpreterOf, isElf, neededLibraries, readElfHeader, sonameOf, withInterpreter } from './elf.js';

export const RUNTIME_SCHEMA = 'asp.runtime/v1';
/** Where every task container mounts the runtime; the PT_INTERP of each packed program. */
export const RUNTIME_LOADER = '/opt/asp/lib/ld.so';

export interface RuntimeSources {
  /** The runner bundle (the image's /opt/asp/sandbox). */
  sandbox: string;
  /** The ASP pipeline's prompts (the image's /opt/asp/prompts). */
  prompts: string;
  /** Where node, git, tar, chmod, mkdir, rm, cat and dash/bash are looked up, like a shell's PATH. */
  path: string;
}

export interface PackOptions {
  /** An empty directory (the volume). */
  out: string;
  version: string;
  sources?: Partial<RuntimeSources>;
  /** The PT_INTERP written into the programs; only a test, which cannot write /opt/asp, sets another. */
  interpreter?: string;
}

export interface RuntimeManifest {
  schema: typeof RUNTIME_SCHEMA;
  version: string;
  arch: string;
  loader: 'lib/ld.so';
  files: number;
  bytes: number;
}

export interface PackSummary extends RuntimeManifest {
  out: string;
  programs: Record<string, string>;
  libraries: string[];
  /** git-core entries that are git itself, made symlinks to it. */
  gitLinks: number;
  /** git-core entries left out: scripts (shell, perl) and separate programs (http, daemon, imap, ...). */
  gitSkipped: string[];
  ms: number;
}

export class PackError extends Error {
  override readonly name = 'PackError';
}

const TRIPLETS: Record<string, string> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };
const DIR_MODE = 0o755;
const PROGRAM_MODE = 0o755;
const FILE_MODE = 0o644;

export function packRuntime(options: PackOptions): PackSummary {
  const started = performance.now();
  const sources: RuntimeSources = { sandbox: '/opt/asp/sandbox', prompts: '/opt/asp/prompts', path: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', ...options.sources };
  const interpreter = options.interpreter ?? RUNTIME_LOADER;
  const out = options.out;
  for (const dir of [sources.sandbox, sources.prompts]) if (!isDir(dir)) throw new PackError(`${dir} is not a directory: the runtime carries the image's runner and prompts`);
  if (readdirSync(out).length > 0) throw new PackError(`${out} is not empty: the runtime is only ever packed into a new volume`);
  const tally = { files: 0, bytes: 0 };

  const programs: Record<string, string> = {
    node: findProgram('node', sources.path),
    git: findProgram('git', sources.path),
    tar: findProgram('tar', sources.path),
    chmod: findProgram('chmod', sources.path),
    // What the runner's own sh scripts call (step-user.ts writes a file as the step user with mkdir, rm and cat).
    mkdir: findProgram('mkdir', sources.path),
    rm: findProgram('rm', sources.path),
    cat: findProgram('cat', sources.path),
    sh: findProgram('dash', sources.path, false) ?? findProgram('bash', sources.path),
  };
  const images = new Map(Object.entries(programs).map(([name, file]) => [name, readProgram(file)]));
  const loader = interpreterOf(images.get('node')!);
  if (!loader) throw new PackError(`${programs.node} is static: there is no loader to take from it`);
  const loaderFile = realpathSync(loader);
  const loaderElf = readProgram(loaderFile);
  const machine = readElfHeader(loaderElf).machine;
  const loaderNames = new Set([path.basename(loader), path.basename(loaderFile), sonameOf(loaderElf)].filter((name) => name !== undefined));
  const libraryDirs = libraryDirsFor(loaderFile);
  const gitCore = gitCoreEntries(programs.git!);

  const libraries = neededClosure([...images.entries()], { machine, loaderNames, libraryDirs });

  for (const dir of ['bin', 'lib', 'git-core']) makeDir(path.join(out, dir));
  writeFile(path.join(out, 'lib', 'ld.so'), loaderElf, PROGRAM_MODE, tally);
  for (const [name, file] of libraries) writeFile(path.join(out, 'lib', name), readFileSync(file), FILE_MODE, tally);
  for (const [name, image] of images) writeFile(path.join(out, 'bin', name), relinked(image, interpreter, programs[name]!), PROGRAM_MODE, tally);
  // git runs its helpers as `git <cmd>` found on a PATH that starts with the exec path, so git-core needs `git`.
  // Debian ships git-core/git as a second copy of /usr/bin/git (same package, same build): one copy serves both.
  symlinkSync('../bin/git', path.join(out, 'git-core', 'git'));
  for (const name of gitCore.links) symlinkSync('git', path.join(out, 'git-core', name));
  copyTree(sources.sandbox, path.join(out, 'sandbox'), tally);
  copyTree(sources.prompts, path.join(out, 'prompts'), tally);

  const manifest: RuntimeManifest = { schema: RUNTIME_SCHEMA, version: options.version, arch: process.arch, loader: 'lib/ld.so', files: tally.files, bytes: tally.bytes };
  const partial = path.join(out, '.runtime.json.partial');
  writeFileSync(partial, `${JSON.stringify(manifest, null, 2)}\n`, { mode: FILE_MODE });
  chmodSync(partial, FILE_MODE);
  renameSync(partial, path.join(out, 'runtime.json'));
  return { ...manifest, out, programs, libraries: [...libraries.keys()].sort(), gitLinks: gitCore.links.length, gitSkipped: gitCore.skipped, ms: Math.round(performance.now() - started) };
}

/** The program's file with PT_INTERP pointed at the runtime's loader; a static program needs none and stays as it is. */
function relinked(image: Buffer, interpreter: string, file: string): Buffer {
  if (interpreterOf(image) === undefined) return image;
  try {
    return withInterpreter(image, interpreter);
  } catch (error) {
    throw new PackError(`${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

interface ClosureContext {
  machine: number;
  /** Names the loader answers to: a DT_NEEDED on it (libc has one) is lib/ld.so, not a second copy. */
  loaderNames: Set<string>;
  libraryDirs: string[];
}

/** Every shared library the programs load, transitively: DT_NEEDED name → the real file it resolves to. */
function neededClosure(roots: [string, Buffer][], context: ClosureContext): Map<string, string> {
  const found = new Map<string, string>();
  const queue = roots.map(([name, image]) => ({ who: name, image }));
  for (let next = queue.shift(); next; next = queue.shift()) {
    for (const name of neededLibraries(next.image)) {
      if (context.loaderNames.has(name) || found.has(name)) continue;
      if (name.includes('/')) throw new PackError(`${next.who} needs ${JSON.stringify(name)}: a DT_NEEDED with a path is not supported`);
      const resolved = findLibrary(name, context);
      if (!resolved) throw new PackError(`${next.who} needs ${name}, which is in none of ${context.libraryDirs.join(', ')}`);
      found.set(name, resolved.file);
      queue.push({ who: name, image: resolved.image });
    }
  }
  return found;
}

function findLibrary(name: string, context: ClosureContext): { file: string; image: Buffer } | undefined {
  for (const dir of context.libraryDirs) {
    const candidate = path.join(dir, name);
    if (!isFile(candidate)) continue;
    const file = realpathSync(candidate);
    const image = readFileSync(file);
    // The loader skips a library of another machine (a multilib dir); so does the packer.
    if (!isElf(image) || !sameMachine(image, context.machine)) continue;
    return { file, image };
  }
  return undefined;
}

function sameMachine(image: Buffer, machine: number): boolean {
  try {
    return readElfHeader(image).machine === machine;
  } catch (error) {
    if (error instanceof ElfError) return false;
    throw error;
  }
}

/** The standard Debian search order, multiarch first; the triplet is the loader's own dir when it is a multiarch one. */
function libraryDirsFor(loaderFile: string): string[] {
  const loaderDir = path.basename(path.dirname(loaderFile));
  const triplet = /^[a-z0-9_]+-linux-gnu[a-z0-9_]*$/.test(loaderDir) ? loaderDir : TRIPLETS[process.arch];
  if (!triplet) throw new PackError(`cannot tell the multiarch triplet: the loader is in ${path.dirname(loaderFile)} and arch ${process.arch} is not x64 or arm64`);
  return [...new Set([`/lib/${triplet}`, `/usr/lib/${triplet}`, '/lib', '/usr/lib', '/lib64', '/usr/lib64'])];
}

/**
 * git-core, sorted: entries that are git itself (most of them: hard links or symlinks) become symlinks to the one
 * copy; the rest are left out. Those are shell and perl scripts, which would need perl or bash in the image, and
 * separate programs for the network and servers (remote-http with libcurl, daemon, http-backend, imap-send, shell,
 * scalar): creating a bundle, rev-list, pack-objects, index-pack, checkout, status, diff, commit, add and init are
 * all builtins of git, so `git` alone serves them.
 */
function gitCoreEntries(git: string): { links: string[]; skipped: string[] } {
  const execPath = execFileSync(git, ['--exec-path'], { encoding: 'utf8' }).trim();
  const gitFiles = [git, path.join(execPath, 'git')].filter(isFile).map((file) => statSync(file));
  const isGit = (file: string) => {
    const stat = statSync(file);
    return gitFiles.some((gitStat) => gitStat.dev === stat.dev && gitStat.ino === stat.ino);
  };
  const links: string[] = [];
  const skipped: string[] = [];
  for (const name of readdirSync(execPath).sort()) {
    if (name === 'git') continue;
    const file = path.join(execPath, name);
    if (!isFile(file)) continue; // mergetools/ and dangling links
    if (isGit(file)) links.push(name);
    else skipped.push(name);
  }
  return { links, skipped };
}

function findProgram(name: string, searchPath: string, required?: true): string;
function findProgram(name: string, searchPath: string, required: false): string | undefined;
function findProgram(name: string, searchPath: string, required = true): string | undefined {
  for (const dir of searchPath.split(':')) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (isFile(candidate)) return realpathSync(candidate);
    } catch {
      // not here; the next dir of PATH
    }
  }
  if (required) throw new PackError(`${name} is not on PATH (${searchPath})`);
  return undefined;
}

function readProgram(file: string): Buffer {
  const image = readFileSync(file);
  if (!isElf(image)) throw new PackError(`${file} is not an ELF program (a script?)`);
  try {
    readElfHeader(image);
  } catch (error) {
    throw new PackError(`${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return image;
}

/** Copies a tree of plain files, modes normalised (the volume's files are the runtime's, not the image's). */
function copyTree(from: string, to: string, tally: { files: number; bytes: number }): void {
  makeDir(to);
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const stat = statSync(source);
    if (stat.isDirectory()) copyTree(source, path.join(to, entry.name), tally);
    else if (stat.isFile()) writeFile(path.join(to, entry.name), readFileSync(source), FILE_MODE, tally);
    else throw new PackError(`${source} is neither a file nor a directory`);
  }
}

function makeDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  chmodSync(dir, DIR_MODE); // mkdir's mode is filtered by the umask
}

function writeFile(file: string, data: Buffer, mode: number, tally: { files: number; bytes: number }): void {
  // flag 'wx': two entries landing on one name (a DT_NEEDED spelled like a program) is a bug, not an overwrite.
  writeFileSync(file, data, { mode, flag: 'wx' });
  chmodSync(file, mode);
  tally.files += 1;
  tally.bytes += data.length;
}

function isDir(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

function main(argv: string[]): void {
  const [out, version, ...rest] = argv;
  if (!out || !version || rest.length > 0) throw new PackError('usage: asp-runtime-pack <out dir> <version>');
  if (!path.isAbsolute(out) || !isDir(out)) throw new PackError(`${out} is not an absolute path to a directory`);
  if (!/^[\w.+-]{1,100}$/.test(version)) throw new PackError(`version ${JSON.stringify(version)} is not a plain version string`);
  process.stdout.write(`${JSON.stringify(packRuntime({ out, version }))}\n`);
}

if (isMain()) {
  try {
    main(process.argv.slice(2));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`asp-runtime-pack: ${message.replace(/\s+/g, ' ')}\n`);
    process.exitCode = 1;
  }
}
