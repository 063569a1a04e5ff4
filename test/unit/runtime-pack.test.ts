import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { interpreterOf, isElf, neededLibraries, withInterpreter } from '../../sandbox/elf.js';
import { packRuntime, RUNTIME_SCHEMA, type PackSummary } from '../../sandbox/runtime-pack.js';

// Runs on the host (Debian, x86-64 or aarch64, with git, node, tar and dash): the packer's input is the host's own
// programs, as it is the image's in the one-shot container.

describe('elf', () => {
  const git = readFileSync(realpathSync('/usr/bin/git'));

  it("reads the host git's loader and the libraries it needs", () => {
    expect(isElf(git)).toBe(true);
    expect(interpreterOf(git)).toMatch(/^\/lib(64)?\/ld-linux-(x86-64\.so\.2|aarch64\.so\.1)$/);
    expect(neededLibraries(git)).toContain('libc.so.6');
    expect(neededLibraries(git)).toContain('libz.so.1');
  });

  it('rewrites PT_INTERP in place, NUL-padded, and leaves every other byte alone', () => {
    const patched = withInterpreter(git, '/x/ld.so');
    expect(interpreterOf(patched)).toBe('/x/ld.so');
    expect(patched.length).toBe(git.length);
    let changed = 0;
    for (let index = 0; index < git.length; index++) if (patched[index] !== git[index]) changed++;
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThanOrEqual(interpreterOf(git)!.length);
    expect(interpreterOf(git)).not.toBe('/x/ld.so'); // the input is not touched
  });

  it('refuses an interpreter path that does not fit the old one with its NUL', () => {
    const room = interpreterOf(git)!.length + 1;
    expect(() => withInterpreter(git, `/${'a'.repeat(room - 2)}`)).not.toThrow();
    expect(() => withInterpreter(git, `/${'a'.repeat(room - 1)}`)).toThrow(/needs \d+ bytes with its NUL, PT_INTERP holds \d+/);
  });

  it('throws a clear error on a truncated or foreign file', () => {
    expect(() => interpreterOf(git.subarray(0, 40))).toThrow(/truncated: the ELF header/);
    expect(() => neededLibraries(git.subarray(0, 200))).toThrow(/truncated/);
    expect(() => interpreterOf(Buffer.from('#!/bin/sh\necho hi\n'))).toThrow(/not an ELF file/);
    expect(isElf(Buffer.from('#!'))).toBe(false);
  });

  it('refuses a program header table pointing outside the file', () => {
    const hostile = Buffer.from(git.subarray(0, 4096));
    hostile.writeBigUInt64LE(0xffff_ffffn, 32); // e_phoff
    expect(() => interpreterOf(hostile)).toThrow(/truncated: \d+ program headers at/);
  });
});

describe('runtime pack', () => {
  let out: string;
  let sources: string;
  let summary: PackSummary;
  let interpreter: string;
  // Nothing of the host's: no PATH, only the runtime's libraries.
  const env = () => ({ LD_LIBRARY_PATH: path.join(out, 'lib'), PATH: '' });
  const run = (program: string, args: string[], extra: Record<string, string> = {}, cwd?: string) =>
    execFileSync(path.join(out, 'bin', program), args, { env: { ...env(), ...extra }, encoding: 'utf8', cwd, stdio: ['ignore', 'pipe', 'pipe'] });

  beforeAll(() => {
    // The packed loader path must fit the host programs' PT_INTERP (28 bytes on x86-64), so the runtime lives in a
    // short dir right under /tmp (realpath'd: the loader maps show real paths) instead of /opt/asp.
    out = realpathSync(mkdtempSync('/tmp/asp-'));
    interpreter = path.join(out, 'lib', 'ld.so');
    expect(interpreter.length).toBeLessThanOrEqual(27);
    sources = mkdtempSync('/tmp/asp-runtime-src-');
    mkdirSync(path.join(sources, 'sandbox'));
    mkdirSync(path.join(sources, 'prompts', 'asp'), { recursive: true });
    writeFileSync(path.join(sources, 'sandbox', 'asp-sandbox.mjs'), 'console.log("runner")\n');
    writeFileSync(path.join(sources, 'prompts', 'asp', 'design.md'), '# design\n');
    summary = packRuntime({ out, version: '0.1.0-test', interpreter, sources: { sandbox: path.join(sources, 'sandbox'), prompts: path.join(sources, 'prompts') } });
  });

  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
    if (sources) rmSync(sources, { recursive: true, force: true });
  });

  it('points every packed program at the runtime loader', () => {
    for (const program of ['node', 'git', 'tar', 'chmod', 'sh']) expect(interpreterOf(readFileSync(path.join(out, 'bin', program)))).toBe(interpreter);
    expect(interpreterOf(readFileSync(path.join(out, 'lib', 'ld.so')))).toBeUndefined();
  });

  it('writes the manifest last, counting what it wrote', () => {
    const manifest: unknown = JSON.parse(readFileSync(path.join(out, 'runtime.json'), 'utf8'));
    expect(manifest).toEqual({ schema: RUNTIME_SCHEMA, version: '0.1.0-test', arch: process.arch, loader: 'lib/ld.so', files: summary.files, bytes: summary.bytes });
    expect(summary.libraries).toContain('libc.so.6');
    expect(summary.libraries).not.toContain(path.basename(interpreterOf(readFileSync('/usr/bin/git'))!)); // the loader is lib/ld.so
    // The loader, the libraries, the eight programs (node, git, tar, chmod, mkdir, rm, cat, sh) and the two runner files.
    expect(summary.files).toBe(1 + summary.libraries.length + 8 + 2);
  });

  it('gives directories and programs 0755, libraries and runner files 0644, and copies real files', () => {
    const mode = (file: string) => statSync(path.join(out, file)).mode & 0o777;
    for (const dir of ['bin', 'lib', 'git-core', 'sandbox', 'prompts', 'prompts/asp']) expect(mode(dir)).toBe(0o755);
    expect(mode('bin/node')).toBe(0o755);
    expect(mode('lib/ld.so')).toBe(0o755);
    expect(mode('lib/libc.so.6')).toBe(0o644);
    expect(mode('sandbox/asp-sandbox.mjs')).toBe(0o644);
    expect(readFileSync(path.join(out, 'prompts', 'asp', 'design.md'), 'utf8')).toBe('# design\n');
    for (const library of summary.libraries) expect(lstatSync(path.join(out, 'lib', library)).isFile()).toBe(true);
  });

  it('makes git-core one git and symlinks to it, without scripts or network helpers', () => {
    expect(readlinkSync(path.join(out, 'git-core', 'git'))).toBe('../bin/git');
    expect(readlinkSync(path.join(out, 'git-core', 'git-pack-objects'))).toBe('git');
    expect(summary.gitSkipped).toContain('git-remote-http');
    expect(summary.gitSkipped).toContain('git-sh-setup');
  });

  it('runs sh, tar, chmod and node with nothing of the host but the kernel', () => {
    expect(run('sh', ['-c', 'echo ok'])).toBe('ok\n');
    expect(run('tar', ['--version'])).toMatch(/^tar \(GNU tar\)/);
    expect(run('chmod', ['--version'])).toMatch(/^chmod \(GNU coreutils\)/);
    expect(run('node', ['-e', 'console.log(process.version)'])).toBe(`${process.version}\n`);
  });

  it('loads the runtime loader and libraries, not the host ones', () => {
    // The shell's own memory map: every shared object in it must come from the runtime.
    const maps = run('sh', ['-c', 'while read -r line; do echo "$line"; done < /proc/$$/maps']);
    const objects = new Set(maps.split('\n').flatMap((line) => (/\s(\/\S+\.so[.\d]*)$/.exec(line) ?? []).slice(1)));
    expect([...objects].sort()).toEqual([interpreter, path.join(out, 'lib', 'libc.so.6')]);
    const nodeMaps = run('node', ['-e', 'process.stdout.write(require("fs").readFileSync("/proc/self/maps", "utf8"))']);
    const nodeObjects = nodeMaps.split('\n').flatMap((line) => (/\s(\/\S+\.so[.\d]*)$/.exec(line) ?? []).slice(1));
    expect(nodeObjects.length).toBeGreaterThan(2);
    expect(nodeObjects.filter((object) => !object.startsWith(`${out}/lib/`))).toEqual([]);
  });

  it('commits, bundles and clones from the bundle with packed git and its exec path', () => {
    const work = path.join(out, 'work'); // under out: removed with it
    mkdirSync(work);
    const gitEnv = {
      GIT_EXEC_PATH: path.join(out, 'git-core'),
      HOME: work,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 'asp',
      GIT_AUTHOR_EMAIL: 'asp@sandbox.invalid',
      GIT_COMMITTER_NAME: 'asp',
      GIT_COMMITTER_EMAIL: 'asp@sandbox.invalid',
    };
    const git = (args: string[], cwd = work) => run('git', args, gitEnv, cwd);
    expect(git(['--version'])).toMatch(/^git version \d/);
    git(['init', '-q', '--template=', '-b', 'main', 'repo']);
    const repo = path.join(work, 'repo');
    writeFileSync(path.join(repo, 'hello.txt'), 'hello\n');
    git(['add', 'hello.txt'], repo);
    git(['commit', '-q', '-m', 'first'], repo);
    expect(git(['status', '--porcelain'], repo)).toBe('');
    // bundle create runs `git pack-objects` and clone runs `git index-pack`: both through git-core/git.
    git(['bundle', 'create', '-q', path.join(work, 'repo.bundle'), 'HEAD', 'main'], repo);
    git(['clone', '-q', '--template=', path.join(work, 'repo.bundle'), 'copy']);
    expect(readFileSync(path.join(work, 'copy', 'hello.txt'), 'utf8')).toBe('hello\n');
    expect(git(['rev-list', '--count', 'HEAD'], path.join(work, 'copy'))).toBe('1\n');
  });
});
