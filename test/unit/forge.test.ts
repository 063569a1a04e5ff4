import { describe, expect, it } from 'vitest';
import { pullRequestTitle } from '../../src/delivery/deliver-changes.js';
import { ownerAndName, redact } from '../../src/forge/forge.js';
import { hostGitEnv } from '../../src/workspace/host-git.js';

describe('forge helpers', () => {
  it.each([
    ['https://github.com/org/app.git', { owner: 'org', name: 'app' }],
    ['https://github.com/org/app', { owner: 'org', name: 'app' }],
    ['git@github.com:org/app.git', { owner: 'org', name: 'app' }],
    ['ssh://git@ghe.example.com/org/app.git', { owner: 'org', name: 'app' }],
    ['git://127.0.0.1:9418/org/app.git', { owner: 'org', name: 'app' }],
  ])('reads owner and name from %s', (url, expected) => {
    expect(ownerAndName(url)).toEqual(expected);
  });

  it('cannot read owner and name from a bare host', () => {
    expect(ownerAndName('https://github.com/app')).toBeUndefined();
  });

  it('redacts credentials from URLs', () => {
    expect(redact('https://user:secret@github.com/org/app.git')).toBe('https://***@github.com/org/app.git');
    expect(redact('https://github.com/org/app.git')).toBe('https://github.com/org/app.git');
  });

  it('titles a PR with the first line of the task, cut to 72 characters', () => {
    expect(pullRequestTitle({ task: 'Fix the auth bug\n\nDetails here', taskId: 't1' })).toBe('Fix the auth bug');
    expect(pullRequestTitle({ task: '', taskId: 't1' })).toBe('asp: t1');
    expect(pullRequestTitle({ task: 'x'.repeat(100), taskId: 't1' })).toHaveLength(72);
  });
});

describe('host git environment', () => {
  it('passes what git needs to reach remotes, and nothing that runs programs', () => {
    const env = hostGitEnv({ PATH: '/bin', HOME: '/h', SSH_AUTH_SOCK: '/s', HTTPS_PROXY: 'p', EDITOR: 'vim', GIT_ASKPASS: 'x', GIT_SSH_COMMAND: 'evil', AWS_SECRET_ACCESS_KEY: 'k', LC_ALL: 'C' });
    expect(env).toEqual({ PATH: '/bin', HOME: '/h', SSH_AUTH_SOCK: '/s', HTTPS_PROXY: 'p', LC_ALL: 'C', GIT_TERMINAL_PROMPT: '0' });
  });
});

describe('forge tokens in host git', () => {
  it('sends a token only to its own host over HTTPS, as config kept off the command line', async () => {
    const { tokenConfig, hostGit } = await import('../../src/workspace/host-git.js');
    const token = { value: 'ghp_secret', host: 'github.com' };
    expect(tokenConfig('https://github.com/o/r.git', token)).toEqual([['http.https://github.com/.extraHeader', `Authorization: Basic ${Buffer.from('x-access-token:ghp_secret').toString('base64')}`]]);
    expect(tokenConfig('https://evil.example/o/r.git', token)).toEqual([]);
    expect(tokenConfig('http://github.com/o/r.git', token)).toEqual([]);
    expect(tokenConfig('git@github.com:o/r.git', token)).toEqual([]);
    // git itself sees the header through GIT_CONFIG_* variables.
    const git = hostGit({ env: { PATH: process.env.PATH }, secretConfig: tokenConfig('https://github.com/o/r.git', token) });
    const value = await git.raw(['config', '--get', 'http.https://github.com/.extraheader']);
    expect(value.trim()).toBe(`Authorization: Basic ${Buffer.from('x-access-token:ghp_secret').toString('base64')}`);
  });
});
