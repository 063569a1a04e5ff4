import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, describe, expect, it } from 'vitest';
import { asp } from '../helpers/cli.js';
import { dockerAvailable, leftovers } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';
import { ensureTestImage } from '../helpers/test-images.js';

const main = path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs');

function scratch() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-batch-'));
  return { dir, env: { ASP_HOME: path.join(dir, 'home'), ASP_WORKSPACES: path.join(dir, 'ws'), CI: 'true' } };
}

function journalEnds(home: string): Array<{ key: string; status: string }> {
  const [batch] = readdirSync(path.join(home, 'batches'));
  return readFileSync(path.join(home, 'batches', batch as string, 'journal.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line))
    .filter((record) => record.event === 'end');
}

describe.skipIf(!dockerAvailable)('asp batch against the real Docker engine', () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('checks each image a line names once before the pool: a missing one is bad input of its line, the others run', async () => {
    const { dir, env } = scratch();
    const repo = repoWith({ 'README.md': 'images\n' });
    const busybox = await ensureTestImage('busybox');
    const lines = [
      { id: 'on-busybox', repo, steps: [{ name: 'work', run: 'test ! -e /bin/bash && echo busybox' }], image: busybox },
      { id: 'on-nothing', repo, steps: [{ name: 'work', run: 'true' }], image: 'asp-no-such-image:1' },
      { id: 'on-asp', repo, steps: [{ name: 'work', run: 'echo asp' }] },
      { id: 'on-busybox-too', repo, steps: [{ name: 'work', run: 'true' }], image: busybox },
    ];
    writeFileSync(path.join(dir, 'tasks.jsonl'), lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const result = await asp(['batch', path.join(dir, 'tasks.jsonl'), '--json'], env);
    expect(result.code).toBe(2);
    const summary = JSON.parse(result.stdout);
    expect(summary).toMatchObject({ total: 4, passed: 3, errors: 1, exitCode: 2 });
    const missing = summary.tasks.find((task: { key: string }) => task.key === 'on-nothing');
    expect(missing).toMatchObject({ status: 'error', exitCode: 2, taskId: null, attempts: 0 });
    expect(missing.error).toMatch(/^line 2: image asp-no-such-image:1 is not present/);
  }, 120_000);

  it('runs 12 tasks at concurrency 2, skips the invalid line, and reports in JSON and JUnit', async () => {
    const { dir, env } = scratch();
    const repo = repoWith({ 'README.md': 'batch\n' });
    const lines: string[] = [];
    for (let index = 1; index <= 12; index += 1) {
      const failing = index === 4 || index === 9;
      lines.push(JSON.stringify({ id: `task-${index}`, repo, task: `task ${index}`, steps: [{ name: 'work', run: failing ? `echo "broken ${index}"; exit 5` : `echo ok ${index}` }] }));
      if (index === 6) lines.push('{"repo": "x", "steps": "not a list"}');
    }
    writeFileSync(path.join(dir, 'tasks.jsonl'), lines.join('\n') + '\n');

    const refused = await asp(['batch', path.join(dir, 'tasks.jsonl')], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('tasks.jsonl:7: steps ');
    expect(refused.stderr).toContain('nothing started');

    const result = await asp(
      ['batch', path.join(dir, 'tasks.jsonl'), '--skip-invalid', '--concurrency', '2', '--json', '--report', path.join(dir, 'report.json'), '--junit', path.join(dir, 'junit.xml')],
      env,
    );
    expect(result.code).toBe(1);
    const summary = JSON.parse(result.stdout);
    expect(summary).toMatchObject({ total: 12, passed: 10, failed: 2, errors: 0, invalid: 1, concurrency: 2, exitCode: 1 });
    expect(JSON.parse(readFileSync(path.join(dir, 'report.json'), 'utf8')).tasks).toHaveLength(12);
    const failed = summary.tasks.filter((task: { status: string }) => task.status === 'failed');
    expect(failed.map((task: { key: string }) => task.key)).toEqual(['task-4', 'task-9']);
    expect(failed[0]).toMatchObject({
      exitCode: 1,
      failedStep: 'work',
      failure: `step work exited 5; full log: ${failed[0].artifactsDir}/events.jsonl, ${failed[0].artifactsDir}/work.json`,
      outputTail: 'broken 4\n',
    });
    expect(summary.tasks.every((task: { traceId: string | null; artifactsDir: string }) => task.traceId && task.artifactsDir.endsWith('.asp'))).toBe(true);

    const xml = readFileSync(path.join(dir, 'junit.xml'), 'utf8');
    expect(XMLValidator.validate(xml)).toBe(true);
    const suite = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(xml).testsuites.testsuite;
    expect(suite).toMatchObject({ tests: '12', failures: '2', errors: '0', skipped: '0' });
    const failing = suite.testcase.filter((testcase: { failure?: unknown }) => testcase.failure);
    expect(failing.map((testcase: { name: string; failure: { message: string; '#text': string } }) => [testcase.name, testcase.failure.message, testcase.failure['#text'].trim()])).toEqual([
      ['task-4', failed[0].failure, 'broken 4'],
      ['task-9', failed[1].failure, 'broken 9'],
    ]);
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('stops cleanly on SIGTERM, and --resume runs every task exactly once in all', async () => {
    const { dir, env } = scratch();
    const repo = repoWith({ 'README.md': 'resume\n' });
    const tasks = Array.from({ length: 8 }, (_, index) => JSON.stringify({ id: `slow-${index + 1}`, repo, steps: [{ name: 'nap', run: 'sleep 1' }] }));
    const file = path.join(dir, 'tasks.jsonl');
    writeFileSync(file, tasks.join('\n') + '\n');

    const child = spawn(process.execPath, [main, 'batch', file, '--concurrency', '2'], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      // Interrupt once a couple of tasks have finished, while others run.
      if ((stderr.match(/\] slow-\d+ passed/g) ?? []).length >= 2 && !child.killed) child.kill('SIGTERM');
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(130);
    expect(stderr).toContain('--resume');
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    const firstEnds = journalEnds(env.ASP_HOME).filter((record) => record.status === 'passed');
    expect(firstEnds.length).toBeGreaterThanOrEqual(2);
    expect(firstEnds.length).toBeLessThan(8);

    const resumed = await asp(['batch', file, '--concurrency', '2', '--resume', '--json'], env);
    expect(resumed.code).toBe(0);
    const summary = JSON.parse(resumed.stdout);
    expect(summary.passed).toBe(8);
    expect(summary.tasks.filter((task: { resumed: boolean }) => task.resumed)).toHaveLength(firstEnds.length);
    // Every task ended for good exactly once across both runs.
    const passedKeys = journalEnds(env.ASP_HOME)
      .filter((record) => record.status === 'passed')
      .map((record) => record.key)
      .sort();
    expect(passedKeys).toEqual(Array.from({ length: 8 }, (_, index) => `slow-${index + 1}`).sort());
  });

  it('refuses bad flags and files with one line and exit 2', async () => {
    const { dir, env } = scratch();
    writeFileSync(path.join(dir, 'one.jsonl'), '{"repo":"x","steps":[{"name":"a","run":"true"}]}\n');
    for (const [args, message] of [
      [['batch', path.join(dir, 'missing.jsonl')], /cannot read task list/],
      [['batch', path.join(dir, 'one.jsonl'), '--concurrency', '0'], /--concurrency "0" is not a whole number from 1 to 256/],
      [['batch', path.join(dir, 'one.jsonl'), '--retries', 'many'], /--retries "many" is not a whole number/],
    ] as Array<[string[], RegExp]>) {
      const result = await asp(args, env);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
    }
  });
});
