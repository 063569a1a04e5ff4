import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RepoMirrors } from '../../src/workspace/repo-mirror.js';
import { cloneRepository, resolveRepoSource } from '../../src/workspace/repository.js';
import { gitIn, repoWith } from '../helpers/repos.js';

describe('repository mirrors', () => {
  it('fetches a remote repository once for many tasks, and tasks clone from the mirror', async () => {
    const origin = repoWith({ 'README.md': 'mirrored\n' });
    const home = mkdtempSync(path.join(os.tmpdir(), 'asp-mirror-'));
    const mirrors = new RepoMirrors(path.join(home, 'mirrors'), { PATH: process.env.PATH });
    const source = resolveRepoSource(`file://${origin}`, home);
    expect(source.kind).toBe('remote');
    const resolved = await Promise.all([mirrors.resolve(source), mirrors.resolve(source), mirrors.resolve(source)]);
    expect(mirrors.fetches).toBe(1);
    expect(new Set(resolved.map((entry) => entry.location)).size).toBe(1);
    expect(resolved[0]).toMatchObject({ kind: 'local', display: `file://${origin}` });
    expect(gitIn(resolved[0].location, 'rev-parse', '--is-bare-repository')).toBe('true');

    const clone = await cloneRepository(resolved[0], path.join(home, 'clone'), 'main', { PATH: process.env.PATH });
    expect(clone.commit).toBe(gitIn(origin, 'rev-parse', 'HEAD'));
    expect(existsSync(path.join(home, 'clone', 'README.md'))).toBe(true);
  });

  // bench/workspace-prep: what makes a warm cache cheap. A later batch fetches only what is new into the mirror it
  // finds (the mirror's pack is the same file afterwards: not cloned again, not repacked), and a task's clone of
  // the mirror hard-links that pack rather than copying it or borrowing it through alternates.
  it('refreshes a mirror a later batch finds with a fetch, and a task clone hard-links its pack', async () => {
    const origin = repoWith({ 'README.md': 'mirrored\n' });
    const home = mkdtempSync(path.join(os.tmpdir(), 'asp-mirror-'));
    const env = { PATH: process.env.PATH };
    const source = resolveRepoSource(`file://${origin}`, home);
    const mirror = (await new RepoMirrors(path.join(home, 'mirrors'), env).resolve(source)).location;
    const packDir = (repoGitDir: string) => path.join(repoGitDir, 'objects', 'pack');
    const packs = (repoGitDir: string) => readdirSync(packDir(repoGitDir)).filter((name) => name.endsWith('.pack'));
    const [pack] = packs(mirror);
    if (!pack) throw new Error('the mirror has no pack');
    const inode = statSync(path.join(packDir(mirror), pack)).ino;

    writeFileSync(path.join(origin, 'NEW.md'), 'later\n');
    gitIn(origin, 'add', 'NEW.md');
    gitIn(origin, 'commit', '-q', '-m', 'later');
    const later = new RepoMirrors(path.join(home, 'mirrors'), env);
    const refreshed = await later.resolve(source);
    expect(refreshed.location).toBe(mirror);
    expect(gitIn(mirror, 'rev-parse', 'main')).toBe(gitIn(origin, 'rev-parse', 'HEAD'));
    expect(statSync(path.join(packDir(mirror), pack)).ino).toBe(inode);

    const clone = path.join(home, 'clone');
    await cloneRepository(refreshed, clone, undefined, env);
    expect(existsSync(path.join(clone, 'NEW.md'))).toBe(true);
    expect(statSync(path.join(packDir(path.join(clone, '.git')), pack)).ino).toBe(inode);
    expect(existsSync(path.join(clone, '.git', 'objects', 'info', 'alternates'))).toBe(false);
  });

  it('says which repository could not be fetched, and leaves no half mirror', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'asp-mirror-'));
    const mirrors = new RepoMirrors(path.join(home, 'mirrors'), { PATH: process.env.PATH });
    await expect(mirrors.resolve(resolveRepoSource('file:///nonexistent/repo.git', home))).rejects.toThrow(/cannot fetch file:\/\/\/nonexistent\/repo.git/);
    expect(existsSync(path.join(home, 'mirrors')) ? readdirSync(path.join(home, 'mirrors')) : []).toEqual([]);
  });
});

describe('HEAD of a fresh clone, read from its files', () => {
  it('matches git for a loose and for a packed branch ref, and leaves anything else to git', async () => {
    const { readHead } = await import('../../src/workspace/repository.js');
    const home = mkdtempSync(path.join(os.tmpdir(), 'asp-head-'));
    const origin = repoWith({ 'README.md': 'head\n' });
    gitIn(origin, 'checkout', '-q', '-b', 'feature/x');
    const clone = await cloneRepository(resolveRepoSource(origin, home), path.join(home, 'clone'), undefined, { PATH: process.env.PATH });
    const dir = path.join(home, 'clone');
    expect(clone).toEqual({ commit: gitIn(origin, 'rev-parse', 'HEAD'), ref: 'feature/x' });
    expect(await readHead(dir)).toEqual([gitIn(dir, 'rev-parse', 'HEAD'), 'feature/x']);

    gitIn(dir, 'pack-refs', '--all');
    expect(existsSync(path.join(dir, '.git', 'refs', 'heads', 'feature', 'x'))).toBe(false);
    expect(await readHead(dir)).toEqual([gitIn(dir, 'rev-parse', 'HEAD'), 'feature/x']);

    gitIn(dir, 'checkout', '-q', '--detach');
    expect(await readHead(dir)).toBeUndefined();
    const empty = mkdtempSync(path.join(os.tmpdir(), 'asp-head-empty-'));
    gitIn(empty, 'init', '-q');
    expect(await readHead(empty)).toBeUndefined();
  });
});
