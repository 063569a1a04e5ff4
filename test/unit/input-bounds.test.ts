import { describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import { hasCredentials } from '../../src/config/repo-url.js';
import { limitsSchema, parseTaskSpec } from '../../src/config/task-spec.js';
import { checkLimitsFit } from '../../src/backend/limits-fit.js';

function refusal(action: () => unknown): AspError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(AspError);
    return error as AspError;
  }
  throw new Error('expected a refusal');
}

describe('credentials in repository URLs', () => {
  it.each([
    'https://user:hunter2@example.com/x.git',
    'https://ghp_abc123token@github.com/org/app.git',
    'http://x-access-token:tok@git.example.com/x.git',
    'ssh://git:password@host/x.git',
    ' HTTPS://token@host/x.git',
  ])('are found in %s', (url) => {
    expect(hasCredentials(url)).toBe(true);
  });

  it.each(['https://github.com/org/app.git', 'ssh://git@host/x.git', 'git@github.com:org/app.git', '../local/repo', 'file:///srv/repo.git', '/path/with@at/repo'])('are not claimed in %s', (url) => {
    expect(hasCredentials(url)).toBe(false);
  });

  it('refuse a task spec without echoing the secret', () => {
    const error = refusal(() => parseTaskSpec({ repo: 'https://ghp_s3cret@github.com/org/app.git' }, 'tasks.jsonl:3'));
    expect(error.message).toContain('repo contains credentials');
    expect(error.message).not.toContain('s3cret');
  });
});

describe('limits a sandbox can actually enforce', () => {
  it.each([
    [{ cpus: 0.001 }, 'cpus must be at least 0.01'],
    [{ cpus: 999 }, 'cpus must be at most 256'],
    [{ cpus: -1 }, 'cpus must be more than 0'],
    [{ timeout: '30d' }, 'timeout must be at most 7d'],
    [{ pids: -1 }, 'pids must be at least 16'],
  ])('refuse %o', (limits, message) => {
    expect(refusal(() => parseTaskSpec({ repo: '.', limits }, 'spec')).message).toContain(message);
  });

  it('accept the edges', () => {
    expect(limitsSchema.parse({ cpus: 0.01, timeout: '7d' })).toMatchObject({ cpus: 0.01, timeout: 7 * 86_400_000 });
  });

  it("must fit the Docker daemon's machine, which is not always this one", () => {
    const limits = limitsSchema.parse({ cpus: 3, memory: '999g' });
    const daemon = { cpus: 2, memoryBytes: 24 * 1024 ** 3 };
    const cpus = refusal(() => checkLimitsFit(limits, daemon));
    expect(cpus).toMatchObject({ code: 'BAD_INPUT', message: "a CPU limit of 3 is more than the 2 CPUs of the Docker daemon's machine", hint: 'pass --cpus 2 or less' });
    const memory = refusal(() => checkLimitsFit({ ...limits, cpus: 1 }, daemon));
    expect(memory.message).toContain('a memory limit of 999.0 GiB is more than the 24.0 GiB');
    expect(memory.hint).toBe('pass --memory 24g or less');
    expect(() => checkLimitsFit({ ...limits, cpus: 2, memory: 24 * 1024 ** 3 }, daemon)).not.toThrow();
    // A daemon that does not say leaves the limits to Docker.
    expect(() => checkLimitsFit(limits, {})).not.toThrow();
  });
});
