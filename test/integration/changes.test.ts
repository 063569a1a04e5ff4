import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { fetchBundle, gitIn, repoWith } from '../helpers/repos.js';
import { artifact, run } from '../helpers/run.js';

describe.skipIf(!dockerAvailable)('changes, secrets and the disk limit, against the real Docker engine', () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('brings changes back as a bundle on top of the base, with a diff stat and a patch', async () => {
    const settings = testSettings();
    const repo = repoWith({ 'README.md': 'old\n', 'src/a.txt': 'a\n' });
    const base = gitIn(repo, 'rev-parse', 'HEAD');
    const { result } = await run(settings, {
      repo,
      task: 'edit things',
      steps: [{ name: 'edit', run: 'echo new > README.md && echo b > src/b.txt && git rm -q src/a.txt' }],
    });
    expect(result.exitCode).toBe(0);
    expect(result.change).toMatchObject({ branch: `asp/${result.taskId}`, base, commits: 1, filesChanged: 3, insertions: 2, deletions: 2 });
    expect(result.change?.stat).toContain('README.md');
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'diff.patch'), 'utf8')).toContain('+new');

    // The bundle is a plain git bundle on top of the base: a clone of the original plus a fetch reproduces the change.
    const check = fetchBundle(repo, result);
    expect(execFileSync('git', ['-C', check, 'show', 'incoming:README.md']).toString()).toBe('new\n');
    expect(execFileSync('git', ['-C', check, 'rev-parse', 'incoming~1']).toString().trim()).toBe(base);
  });

  it('commits with a subject cut at a word with an ellipsis, and the whole task in the body', async () => {
    const repo = repoWith({ 'README.md': 'old\n' });
    const task = `Rewrite the README so that it explains installation, configuration and troubleshooting\n\n${'and keep every detail of this long task. '.repeat(4000)}THE END`;
    const { result } = await run(testSettings(), { repo, task, steps: [{ name: 'edit', run: 'echo new > README.md' }] });
    expect(result.change?.commits).toBe(1);
    const check = fetchBundle(repo, result);
    const subject = execFileSync('git', ['-C', check, 'log', '-1', '--format=%s', 'incoming']).toString().trim();
    expect(subject).toBe('asp: Rewrite the README so that it explains installation,…');
    const body = execFileSync('git', ['-C', check, 'log', '-1', '--format=%b', 'incoming'], { maxBuffer: 16 * 1024 * 1024 }).toString();
    expect(body.trim()).toBe(task);
  });

  it('says there are no changes when the steps changed nothing', async () => {
    const { result } = await run(testSettings(), { repo: repoWith({ 'README.md': 'x\n' }), steps: [{ name: 'look', run: 'cat README.md' }] });
    expect(result.change).toBeNull();
    expect(result.artifacts).not.toContain('change.bundle');
  });

  it('masks secret variables let in with env in output, events, trace and step records', async () => {
    const settings = testSettings({ hostEnv: { ...process.env, MY_API_TOKEN: 'tok-5ecret-value-123', PLAIN_SETTING: 'visible-value' } });
    const { result, output } = await run(settings, {
      repo: repoWith({ 'README.md': 'x\n' }),
      env: ['MY_API_TOKEN', 'PLAIN_SETTING'],
      // printf in two parts: the secret arrives split across writes and must still be masked.
      steps: [{ name: 'leak', run: 'printf "token=tok-5ecr"; sleep 0.2; printf "et-value-123\\n"; echo "plain=$PLAIN_SETTING"; echo "$MY_API_TOKEN" >&2' }],
    });
    expect(result.exitCode).toBe(0);
    const asp = path.join(result.workspacePath, '.asp');
    const everything = [output, ...readdirSync(asp).map((name) => readFileSync(path.join(asp, name), 'utf8'))].join('\n');
    expect(everything).not.toContain('tok-5ecret-value-123');
    expect(output).toContain('[leak] token=***');
    expect(output).toContain('[leak] plain=visible-value');
    expect(artifact<{ outputTail: string }>(result, 'leak.json').outputTail).toContain('token=***');
  });

  it('stops a step that fills the workspace past --disk', async () => {
    const { result } = await run(testSettings(), {
      repo: repoWith({ 'README.md': 'x\n' }),
      steps: [{ name: 'fill', run: 'for i in $(seq 1 200); do head -c 1048576 /dev/urandom > blob-$i; sleep 0.02; done' }],
      limits: { disk: '30m' },
    });
    expect(result.exitCode).toBe(1);
    expect(result.steps[0]).toMatchObject({ name: 'fill', status: 'failed', exitCode: 28 });
    const record = artifact<{ reason: string }>(result, 'fill.json');
    expect(record.reason).toMatch(/past its 31457280-byte disk limit/);
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(false);
  });
});
