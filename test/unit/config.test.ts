import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import { parseStepFlag, readPipelineFile, resolveSteps } from '../../src/config/pipeline.js';
import { readSettings } from '../../src/config/settings.js';
import { generateTaskId, slugify } from '../../src/config/task-id.js';
import { parseTaskSpec } from '../../src/config/task-spec.js';
import { parseDuration, parseSize } from '../../src/config/units.js';

function badInput(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(AspError);
    expect((error as AspError).code).toBe('BAD_INPUT');
    return (error as AspError).message;
  }
  throw new Error('expected a BAD_INPUT error');
}

describe('units', () => {
  it('parses durations', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30')).toBe(30_000);
    expect(parseDuration('soon')).toBeUndefined();
    expect(parseDuration('0s')).toBeUndefined();
    expect(parseDuration('-5m')).toBeUndefined();
  });

  it('parses sizes', () => {
    expect(parseSize('512m')).toBe(512 * 1024 ** 2);
    expect(parseSize('2g')).toBe(2 * 1024 ** 3);
    expect(parseSize('2GiB')).toBe(2 * 1024 ** 3);
    expect(parseSize('100')).toBe(100);
    expect(parseSize('lots')).toBeUndefined();
    expect(parseSize('0')).toBeUndefined();
  });
});

describe('task spec', () => {
  it('fills the defaults', () => {
    const spec = parseTaskSpec({ repo: '.' });
    expect(spec.limits).toEqual({ timeout: 1_800_000, memory: 2 * 1024 ** 3, cpus: 1, pids: 512, tmpfs: 512 * 1024 ** 2, disk: 4 * 1024 ** 3 });
    expect(spec.outputCap).toBe(10 * 1024 ** 2);
    expect(spec.keep).toBe(false);
    expect(spec.env).toEqual([]);
  });

  it.each([
    [{ repo: '' }, 'repo is required'],
    [{ repo: '.', id: 'Bad ID!' }, 'id must match'],
    [{ repo: '.', limits: { memory: 'lots' } }, 'limits.memory "lots" is not a size'],
    [{ repo: '.', limits: { memory: '1m' } }, 'limits.memory must be at least 6m'],
    [{ repo: '.', limits: { timeout: 'soon' } }, 'limits.timeout "soon" is not a duration'],
    [{ repo: '.', limits: { cpus: 0 } }, 'limits.cpus must be more than 0'],
    [{ repo: '.', limits: { pids: 3 } }, 'limits.pids must be at least 16'],
    [{ repo: '.', steps: [{ name: '../x', run: 'true' }] }, 'steps.0.name must be letters'],
    [{ repo: '.', steps: [{ name: 'trace', run: 'true' }] }, 'steps.0.name is reserved'],
    [{ repo: '.', steps: [{ name: 'a', run: '' }] }, 'steps.0.run must be a shell command'],
    [{ repo: '.', steps: [{ name: 'a', run: [] }] }, 'steps.0.run must name a program'],
    [{ repo: '.', steps: [{ name: 'a', run: ['ok', 7] }] }, 'steps.0.run'],
    [{ repo: '.', steps: [{ name: 'a', run: { cmd: 'x' } }] }, 'steps.0.run must be a shell command (a string) or a program with its arguments (a list of strings)'],
    [
      {
        repo: '.',
        steps: [
          { name: 'a', run: 'x' },
          { name: 'a', run: 'y' },
        ],
      },
      'steps.1.name "a" is used twice',
    ],
    [{ repo: '.', env: ['NOT-A-NAME'] }, 'env.0 must be an environment variable name'],
    [{ repo: '.', colour: 'blue' }, 'unknown field(s) "colour"'],
    [
      {
        repo: '.',
        repos: [
          { name: 'web', repo: 'a' },
          { name: 'web', repo: 'b' },
        ],
      },
      'repos.1.name "web" is used twice',
    ],
    [{ repo: '.', repos: [{ name: '../web', repo: 'a' }] }, 'repos.0.name must match'],
    [{ repo: '.', repos: [{ name: 'web', repo: 'https://u:p@example.com/x.git' }] }, 'repos.0.repo contains credentials'],
  ])('rejects %o with a message naming the field', (input, expected) => {
    expect(badInput(() => parseTaskSpec(input, 'spec'))).toContain(expected);
  });
});

describe('--step flags', () => {
  it('splits at the first =', () => {
    expect(parseStepFlag('test=npm test -- --grep=x')).toEqual({ name: 'test', run: 'npm test -- --grep=x' });
  });

  it.each(['no-command', '=echo', 'name=', ''])('rejects "%s"', (flag) => {
    expect(badInput(() => parseStepFlag(flag))).toContain('is not name=command');
  });
});

describe('pipeline files', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-pipeline-'));
  const file = (name: string, content: string) => {
    writeFileSync(path.join(dir, name), content);
    return path.join(dir, name);
  };

  it('reads steps with timeouts', async () => {
    const steps = await readPipelineFile(file('ok.json', '{"steps":[{"name":"test","run":"npm test","timeout":"2m"}]}'));
    expect(steps).toEqual([{ name: 'test', run: 'npm test', timeout: 120_000 }]);
  });

  it.each([
    ['broken.json', '{"steps": [', 'is not valid JSON'],
    ['empty.json', '{"steps": []}', 'steps needs at least one step'],
    ['field.json', '{"steps": [{"name": "t", "run": "x", "timeout": "forever"}]}', 'steps.0.timeout "forever" is not a duration'],
    ['typo.json', '{"stpes": []}', 'steps is required; (top level): unknown field(s) "stpes"'],
  ])('points at what is wrong in %s', async (name, content, expected) => {
    await expect(readPipelineFile(file(name, content))).rejects.toThrow(expected);
  });

  it('says so when the file is missing', async () => {
    await expect(readPipelineFile(path.join(dir, 'nope.json'))).rejects.toThrow('cannot read pipeline');
  });

  it('caps each step at the task deadline and fails clearly without steps', async () => {
    const spec = parseTaskSpec({
      repo: '.',
      steps: [
        { name: 'a', run: 'x', timeout: '2h' },
        { name: 'b', run: 'y' },
      ],
      limits: { timeout: '10m' },
    });
    expect(await resolveSteps(spec, dir, dir)).toEqual([
      { name: 'a', run: 'x', timeoutMs: 600_000 },
      { name: 'b', run: 'y', timeoutMs: 600_000 },
    ]);
    await expect(resolveSteps(parseTaskSpec({ repo: '.' }), dir, dir)).rejects.toThrow('no steps to run');
  });

  it('runs a step given as a list as it is, and shows it as a shell would read it', async () => {
    const spec = parseTaskSpec({ repo: '.', steps: [{ name: 'argv', run: ['/app/test', '--name', "it's $HOME", 'a,b=c'] }] });
    expect(await resolveSteps(spec, dir, dir)).toEqual([
      { name: 'argv', run: "/app/test --name 'it'\\''s $HOME' a,b=c", argv: ['/app/test', '--name', "it's $HOME", 'a,b=c'], timeoutMs: 30 * 60_000 },
    ]);
  });
});

describe('task ids', () => {
  it('are readable: date, time and a slug of the task', () => {
    expect(generateTaskId('Fix the auth bug!', new Date('2026-11-25T04:12:00Z'))).toBe('task-20261125-0412-fix-the-auth-bug');
    expect(generateTaskId('', new Date('2026-11-25T04:12:00Z'))).toBe('task-20261125-0412-run');
  });

  it('cut long slugs at a word boundary', () => {
    expect(slugify('Review and test the greet function please')).toBe('review-and-test-the-greet');
  });
});

describe('settings', () => {
  it('reads the workspace root, Langfuse keys and retention from the environment', () => {
    const settings = readSettings({ ASP_WORKSPACES: '/x/ws', LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', ASP_RETENTION: '3' });
    expect(settings.workspacesRoot).toBe('/x/ws');
    expect(settings.langfuse).toEqual({ publicKey: 'pk', secretKey: 'sk', baseUrl: 'https://cloud.langfuse.com' });
    expect(settings.retentionMs).toBe(3 * 86_400_000);
  });

  it('defaults to /tmp/asp-workspaces and no Langfuse', () => {
    const settings = readSettings({});
    expect(settings.workspacesRoot).toBe('/tmp/asp-workspaces');
    expect(settings.langfuse).toBeUndefined();
  });

  it('rejects a bad ASP_RETENTION', () => {
    expect(() => readSettings({ ASP_RETENTION: 'forever' })).toThrow('ASP_RETENTION="forever" is not a duration');
  });
});

describe('what every trace says of where and by whom (issue 20)', () => {
  it('reads the environment, the release and the user; the user falls back to the CI actor, then the host user', async () => {
    const { readSettings } = await import('../../src/config/settings.js');
    expect(readSettings({ LANGFUSE_TRACING_ENVIRONMENT: 'ci', LANGFUSE_RELEASE: 'v1.2', ASP_TRACE_USER: 'robot', GITHUB_ACTOR: 'octocat' }).trace).toEqual({
      environment: 'ci',
      release: 'v1.2',
      user: 'robot',
    });
    expect(readSettings({ GITHUB_ACTOR: 'octocat', GITLAB_USER_LOGIN: 'other' }).trace).toEqual({ environment: 'default', release: undefined, user: 'octocat' });
    expect(readSettings({ GITLAB_USER_LOGIN: 'gitlab-user' }).trace.user).toBe('gitlab-user');
    expect(readSettings({}).trace.user).toBe((await import('node:os')).userInfo().username);
  });

  it('refuses an environment Langfuse would not take, and a session or user that is no name, each in one line', async () => {
    const { readSettings, traceName } = await import('../../src/config/settings.js');
    for (const environment of ['CI', 'langfuse-x', 'has space', 'a'.repeat(41)]) {
      expect(() => readSettings({ LANGFUSE_TRACING_ENVIRONMENT: environment }), environment).toThrow(/is not an environment name Langfuse takes/);
    }
    expect(traceName('--session', undefined)).toBeUndefined();
    expect(traceName('--session', ' nightly-1 ')).toBe('nightly-1');
    for (const bad of ['', '   ', 'a\nb', 'x'.repeat(201)]) expect(() => traceName('--user', bad), JSON.stringify(bad)).toThrow(/--user ".*" is not a name Langfuse can group by/);
  });
});
