import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import { defaultPushTarget, explicitPushTarget } from '../../src/delivery/push-target.js';
import { gitIn, repoWith } from '../helpers/repos.js';

const env = { PATH: process.env.PATH, HOME: process.env.HOME };

/** A bare upstream and a working clone of it (origin = the upstream), as `git clone` leaves them. */
function cloneOfUpstream(): { upstream: string; clone: string } {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-push-target-'));
  const upstream = path.join(scratch, 'upstream.git');
  const clone = path.join(scratch, 'clone');
  execFileSync('git', ['clone', '-q', '--bare', repoWith({ 'README.md': 'x\n' }), upstream]);
  execFileSync('git', ['clone', '-q', upstream, clone]);
  return { upstream, clone };
}

async function badInput(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AspError);
  expect((error as AspError).code).toBe('BAD_INPUT');
  return (error as AspError).message;
}

describe('where --push sends the branch', () => {
  it("pushes a local working clone's branch to its origin, not into the clone", async () => {
    const { upstream, clone } = cloneOfUpstream();
    expect(await defaultPushTarget(clone, env)).toEqual({ remote: upstream, via: `origin of ${clone}` });
  });

  it("follows the current branch's remote, and a push URL over the fetch URL", async () => {
    const { clone } = cloneOfUpstream();
    const fork = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-fork-')), 'fork.git');
    const forkPush = path.join(path.dirname(fork), 'fork-push.git');
    gitIn(clone, 'remote', 'add', 'fork', fork);
    gitIn(clone, 'config', `branch.${gitIn(clone, 'branch', '--show-current')}.remote`, 'fork');
    expect((await defaultPushTarget(clone, env)).remote).toBe(fork);
    gitIn(clone, 'config', 'remote.fork.pushurl', forkPush);
    expect((await defaultPushTarget(clone, env)).remote).toBe(forkPush);
  });

  it('pushes to the repository itself when it is bare, has no remote, or is a URL', async () => {
    const { upstream } = cloneOfUpstream();
    expect((await defaultPushTarget(upstream, env)).remote).toBe(upstream);
    const lone = repoWith({ 'a.txt': 'a\n' });
    expect((await defaultPushTarget(lone, env)).remote).toBe(lone);
    expect((await defaultPushTarget('https://github.com/org/app.git', env)).remote).toBe('https://github.com/org/app.git');
  });

  it("never carries a token of the clone's origin URL into what it saves and prints", async () => {
    const { clone } = cloneOfUpstream();
    gitIn(clone, 'remote', 'set-url', 'origin', 'https://ghp_secret123@github.com/org/app.git');
    expect((await defaultPushTarget(clone, env)).remote).toBe('https://github.com/org/app.git');
  });
});

describe('--push-to', () => {
  it('takes a remote of the clone, a URL, or the path of a repository', async () => {
    const { upstream, clone } = cloneOfUpstream();
    const other = repoWith({ 'b.txt': 'b\n' });
    gitIn(clone, 'remote', 'add', 'mirror', other);
    expect((await explicitPushTarget('mirror', clone, '/', env)).remote).toBe(other);
    expect((await explicitPushTarget('origin', clone, '/', env)).remote).toBe(upstream);
    expect((await explicitPushTarget('ssh://git@example.org/org/app.git', clone, '/', env)).remote).toBe('ssh://git@example.org/org/app.git');
    expect((await explicitPushTarget(`./${path.basename(clone)}`, clone, path.dirname(clone), env)).remote).toBe(clone);
  });

  it('refuses a remote the clone does not have, naming the ones it has', async () => {
    const { clone } = cloneOfUpstream();
    expect(await badInput(explicitPushTarget('upstream', clone, '/', env))).toBe(`--push-to: ${clone} has no remote named upstream (its remotes: origin)`);
  });

  it('refuses a remote name when --repo is a URL, a missing path, a URL with credentials, and an option', async () => {
    expect(await badInput(explicitPushTarget('origin', 'https://github.com/org/app.git', '/', env))).toContain('is not a local working clone');
    expect(await badInput(explicitPushTarget('./nowhere', '/tmp', '/tmp', env))).toBe('--push-to ./nowhere: no such directory /tmp/nowhere');
    expect(await badInput(explicitPushTarget('https://u:p@github.com/o/a.git', '/tmp', '/', env))).toBe('the --push-to URL contains credentials');
    expect(await badInput(explicitPushTarget('--upload-pack=evil', '/tmp', '/', env))).toContain('is not a remote, a URL or a path');
  });
});
