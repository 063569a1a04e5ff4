import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { batchProgress } from '../../src/batch/batch-progress.js';
import { batchIdFor } from '../../src/batch/journal.js';
import { runBatch } from '../../src/batch/run-batch.js';
import { readTaskList } from '../../src/batch/task-list.js';
import { readSettings } from '../../src/config/settings.js';
import { AspError } from '../../src/core/asp-error.js';
import { systemClock } from '../../src/core/clock.js';
import type { Log } from '../../src/core/log.js';
import { FakeBackend } from '../helpers/fake-backend.js';
import { repoWith } from '../helpers/repos.js';

const unavailable = () => new AspError('DOCKER_UNAVAILABLE', 'Docker at unix:///fake.sock does not answer (ECONNREFUSED)', 'start the Docker daemon');

/** A batch of `count` one-step tasks through runBatch on `backend`, with what it logged. */
async function batchOn(backend: FakeBackend, count: number, options: { engineWaitMs: number; retries?: number; concurrency?: number; before?: (journalDir: string) => void }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-gate-'));
  const repo = repoWith({ 'README.md': 'x\n' });
  const file = path.join(dir, 'tasks.jsonl');
  writeFileSync(file, Array.from({ length: count }, (_, index) => JSON.stringify({ id: `t${index + 1}`, repo, steps: [{ name: 'work', run: 'true' }] })).join('\n') + '\n');
  const list = await readTaskList(file);
  const settings = readSettings({ PATH: process.env.PATH, HOME: dir, ASP_HOME: path.join(dir, 'asp'), ASP_WORKSPACES: path.join(dir, 'workspaces') });
  const batchId = batchIdFor(file, readFileSync(file, 'utf8'));
  options.before?.(path.join(settings.home, 'batches', batchId));
  const lines: string[] = [];
  const log: Log = { info: (_fields, message) => lines.push(message), debug: () => {}, warn: (_fields, message) => lines.push(message), error: (_fields, message) => lines.push(message) };
  const summary = await runBatch(
    list,
    {
      file,
      batchId,
      concurrency: options.concurrency ?? 1,
      resume: false,
      retries: options.retries ?? 2,
      backoffMs: 1,
      engineWaitMs: options.engineWaitMs,
      invalidCount: 0,
      listIdentity: { digest: list.digest, tasks: list.entries.length },
      shard: null,
    },
    { backend, settings, clock: systemClock, log, cwd: dir, progress: batchProgress(0, { tty: false, write: () => {} }), traceMode: 'off' },
  );
  return { summary, lines };
}

describe('a batch whose engine stops answering', () => {
  it('starts and retries nothing while the engine does not answer, and goes on once it does', async () => {
    const backend = new FakeBackend();
    // The engine goes away under the first task's create, and answers again on the fifth ask (3.75 s later: asks
    // pause 0.25, 0.5, 1 and 2 s; the first second of silence is not worth a line, the rest is).
    backend.fail('create volume', unavailable(), { times: 1 });
    backend.fail('ping', unavailable(), { times: 4 });
    const { summary, lines } = await batchOn(backend, 3, { engineWaitMs: 60_000 });
    expect(summary).toMatchObject({ exitCode: 0, passed: 3, stopped: null });
    expect(summary.tasks.map((task) => task.attempts)).toEqual([2, 1, 1]);
    // Between the failure and the retry: only asks, five of them (four unanswered), and no other operation.
    const failed = backend.calls.indexOf('create volume vol-1');
    const retried = backend.calls.findIndex((call, index) => index > failed && call === 'describe');
    expect(backend.calls.slice(failed + 1, retried).filter((call) => call !== 'remove volume vol-1')).toEqual(['ping', 'ping', 'ping', 'ping', 'ping']);
    expect(lines.some((line) => line.startsWith('the container engine does not answer'))).toBe(true);
    expect(lines.some((line) => line.startsWith('the container engine answers again after'))).toBe(true);
  });

  it('gone past --engine-wait: the batch stops starting tasks (the rest not run), says why, and exits 3', async () => {
    const backend = new FakeBackend();
    backend.fail('create volume', unavailable());
    backend.fail('ping', unavailable());
    const { summary, lines } = await batchOn(backend, 3, { engineWaitMs: 300 });
    expect(summary.exitCode).toBe(3);
    expect(summary.stopped).toMatch(/^the container engine has not answered for \d+ms \(Docker at unix:\/\/\/fake.sock does not answer \(ECONNREFUSED\)\): no more tasks start; finish with --resume/);
    expect(summary.tasks.map((task) => [task.key, task.status, task.attempts])).toEqual([
      ['t1', 'error', 1],
      ['t2', 'not-run', 0],
      ['t3', 'not-run', 0],
    ]);
    expect(lines.filter((line) => line.startsWith('the container engine has not answered'))).toHaveLength(1);
  });

  it('a journal that cannot be written stops the batch (exit 3) with one line naming it', async () => {
    const backend = new FakeBackend();
    // Its journal file is a directory: every append fails, as on a full disk.
    const { summary, lines } = await batchOn(backend, 2, { engineWaitMs: 1000, before: (dir) => mkdirSync(path.join(dir, 'journal.jsonl'), { recursive: true }) });
    expect(summary.exitCode).toBe(3);
    expect(summary.stopped).toMatch(/^the batch journal .*journal\.jsonl cannot be written \(EISDIR.*\): no more tasks start; free some space and finish with --resume$/);
    expect(summary.tasks.map((task) => task.status)).toEqual(['not-run', 'not-run']);
    expect(lines.filter((line) => line.startsWith('the batch journal'))).toHaveLength(1);
    expect(backend.calls).not.toContain('create volume vol-1');
  });

  it('removes at its end what the engine kept of its failed tasks', async () => {
    const backend = new FakeBackend();
    // The removal fails while the engine is away: the volume stays, labelled with this process as its owner.
    backend.fail('create container', unavailable(), { times: 1 });
    backend.fail('remove volume', unavailable(), { times: 1 });
    const { summary, lines } = await batchOn(backend, 1, { engineWaitMs: 60_000 });
    expect(summary).toMatchObject({ exitCode: 0, passed: 1 });
    expect(backend.leftovers()).toEqual([]);
    expect(lines).toContain("removed 1 object(s) the engine kept of this batch's failed tasks");
  });
});
