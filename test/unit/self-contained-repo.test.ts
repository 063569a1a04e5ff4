import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AspError, exitCodeFor } from '../../src/core/asp-error.js';
import { readSettings } from '../../src/config/settings.js';
import { parseTaskSpec, type TaskSpecInput } from '../../src/config/task-spec.js';
import type { SandboxBackend } from '../../src/backend/sandbox-backend.js';
import { systemClock } from '../../src/core/clock.js';
import { silentLog } from '../../src/core/log.js';
import { runTask } from '../../src/supervisor/run-task.js';
import { cloneRepository, resolveRepoSource } from '../../src/workspace/repository.js';
import { privateRepo, REACHING, type ReachingKind } from '../fixtures/hostile/reaching-repos.js';
import { allText } from '../helpers/host-checks.js';
import { gitIn, repoWith } from '../helpers/repos.js';

const env = { PATH: process.env.PATH };
const KINDS = Object.keys(REACHING) as ReachingKind[];
/** The ways through which plain git, asked for a shallow clone, really hands over the private file. */
const LEAKS_THROUGH_GIT: ReachingKind[] = ['alternates', 'alternates and a symlinked ref', 'a symlinked pack', 'commondir', 'a .git file', 'a decoy .git'];
const SHAPES: Array<[string, TaskSpecInput['clone']]> = [
  ['a plain clone', undefined],
  ['--depth 1', { depth: 1 }],
  ['--filter blob:none', { filter: 'blob:none' }],
];

/** A sandbox backend that records any call and fails it: a refused source must never get as far as a sandbox. */
function tripwire(): { backend: SandboxBackend; calls: string[] } {
  const calls: string[] = [];
  const backend = new Proxy({} as SandboxBackend, {
    get: (_target, name) =>
      name === 'then'
        ? undefined
        : () => {
            calls.push(String(name));
            throw new Error(`the backend was called (${String(name)})`);
          },
  });
  return { backend, calls };
}

function refusal(action: () => unknown): AspError {
  try {
    action();
  } catch (error) {
    if (error instanceof AspError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('local sources that reach outside themselves (issue 14, item 4)', () => {
  describe('the fixtures are real: plain git hands the private file to whoever clones them', () => {
    it.each(LEAKS_THROUGH_GIT)('%s, cloned with --depth 1', (kind) => {
      const target = privateRepo();
      const hostile = REACHING[kind](target);
      const clone = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-leak-')), 'clone');
      execFileSync('git', ['clone', '-q', '--depth', '1', '--no-single-branch', `file://${hostile}`, clone], { env, stdio: 'pipe' });
      expect(gitIn(clone, 'show', `${target.commit}:SECRET.txt`)).toBe(target.secret);
    });

    it("a plain local clone copies the alternates file, and with it the private repository's path", () => {
      const target = privateRepo();
      const clone = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-leak-')), 'clone');
      execFileSync('git', ['clone', '-q', REACHING.alternates(target), clone], { env, stdio: 'pipe' });
      expect(readFileSync(path.join(clone, '.git', 'objects', 'info', 'alternates'), 'utf8')).toContain(target.dir);
    });
  });

  describe.each(KINDS)('a repository with %s', (kind) => {
    it('is refused in one line, exit 2, naming neither the private repository nor its content', () => {
      const target = privateRepo();
      const hostile = REACHING[kind](target);
      const error = refusal(() => resolveRepoSource(hostile, os.tmpdir()));
      expect(error.code).toBe('BAD_INPUT');
      expect(exitCodeFor(error.code)).toBe(2);
      expect(error.message).toMatch(new RegExp(`^repository ${hostile} reaches outside itself: `));
      expect(error.hint).toMatch(/self-contained|main working tree/);
      const said = `${error.message} ${error.hint}`;
      expect(said).not.toContain('\n');
      expect(said).not.toContain(target.secret);
      expect(said).not.toContain(target.dir);
    });

    it.each(SHAPES)('is refused by asp run with %s before anything is made: no task dir, no Docker call, the secret nowhere', async (_shape, clone) => {
      const target = privateRepo();
      const hostile = REACHING[kind](target);
      const base = mkdtempSync(path.join(os.tmpdir(), 'asp-reach-'));
      const settings = { ...readSettings(env), workspacesRoot: path.join(base, 'workspaces'), home: path.join(base, 'home') };
      const { backend, calls } = tripwire();
      let output = '';
      const spec = parseTaskSpec({ repo: hostile, task: 'read the secret', steps: [{ name: 'leak', run: 'cat SECRET.txt' }], ...(clone ? { clone } : {}) });
      const failure = await runTask(spec, { backend, settings, clock: systemClock, log: silentLog, cwd: base, writeOutput: (text) => (output += text) }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toBeInstanceOf(AspError);
      expect((failure as AspError).code).toBe('BAD_INPUT');
      expect((failure as AspError).message).toContain('reaches outside itself');
      expect(calls).toEqual([]);
      expect(existsSync(settings.workspacesRoot) ? readdirSync(settings.workspacesRoot) : []).toEqual([]);
      expect(existsSync(settings.home) ? readdirSync(settings.home) : []).toEqual([]);
      expect(allText(base)).not.toContain(target.secret);
      expect(output).toBe('');
    });
  });

  it('refuses such a repository among the repos of a multi-repo task too, before anything is made', async () => {
    const target = privateRepo();
    const base = mkdtempSync(path.join(os.tmpdir(), 'asp-reach-'));
    const settings = { ...readSettings(env), workspacesRoot: path.join(base, 'workspaces'), home: path.join(base, 'home') };
    const { backend, calls } = tripwire();
    const spec = parseTaskSpec({
      repo: repoWith({ 'README.md': 'the main one is fine\n' }),
      repos: [{ name: 'lib', repo: REACHING['alternates and a symlinked ref'](target) }],
      steps: [{ name: 'leak', run: 'cat ../repos/lib/SECRET.txt' }],
    });
    await expect(runTask(spec, { backend, settings, clock: systemClock, log: silentLog, cwd: base, writeOutput: () => {} })).rejects.toMatchObject({
      code: 'BAD_INPUT',
      message: expect.stringContaining('reaches outside itself: objects/info/alternates'),
    });
    expect(calls).toEqual([]);
    expect(existsSync(settings.workspacesRoot) ? readdirSync(settings.workspacesRoot) : []).toEqual([]);
  });

  it('refuses the path of a file:// URL the same way: upload-pack would serve its alternates', () => {
    const target = privateRepo();
    const error = refusal(() => resolveRepoSource(`file://${REACHING.alternates(target)}`, os.tmpdir()));
    expect(error.code).toBe('BAD_INPUT');
    expect(error.message).toContain('objects/info/alternates borrows objects from another repository');
  });

  it('checks again right before the clone: an alternates file that appears after the task was accepted is refused', async () => {
    const target = privateRepo();
    const source = resolveRepoSource(repoWith({ 'README.md': 'fine at first\n' }), os.tmpdir());
    // The source changes between the check and the clone.
    writeFileSync(path.join(source.location, '.git', 'objects', 'info', 'alternates'), `${path.join(target.dir, '.git', 'objects')}\n`);
    const destination = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-reach-')), 'repo');
    await expect(cloneRepository(source, destination, undefined, env)).rejects.toMatchObject({
      code: 'BAD_INPUT',
      message: expect.stringContaining('reaches outside itself: objects/info/alternates borrows objects from another repository'),
    });
    expect(existsSync(destination)).toBe(false); // refused before git made anything
  });

  describe('self-contained repositories still run', () => {
    it('a plain one, one with packed refs and a symlink committed in its tree, and a bare one', () => {
      const plain = repoWith({ 'README.md': 'plain\n' });
      expect(resolveRepoSource(plain, os.tmpdir())).toMatchObject({ kind: 'local', location: plain });

      const packed = repoWith({ 'README.md': 'packed\n' });
      symlinkSync('README.md', path.join(packed, 'link-in-the-tree'));
      gitIn(packed, 'add', 'link-in-the-tree');
      gitIn(packed, 'commit', '-q', '-m', "a link in the tree is the repository's own business");
      gitIn(packed, 'tag', 'v1');
      gitIn(packed, 'pack-refs', '--all');
      gitIn(packed, 'gc', '-q');
      expect(resolveRepoSource(packed, os.tmpdir()).kind).toBe('local');

      const bare = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-bare-')), 'bare.git');
      execFileSync('git', ['clone', '-q', '--bare', plain, bare], { env, stdio: 'pipe' });
      expect(resolveRepoSource(bare, os.tmpdir()).kind).toBe('local');
    });

    it("the same repository named through a symlinked path (the path is the user's; links inside it are not)", () => {
      const plain = repoWith({ 'README.md': 'plain\n' });
      const link = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-link-')), 'via-link');
      symlinkSync(plain, link);
      expect(resolveRepoSource(link, os.tmpdir()).kind).toBe('local');
    });
  });
});
