import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { probeScores } from '../../src/tracing/probe-scores.js';
import type { TraceDocument } from '../../src/tracing/trace-model.js';
import { TraceStore } from '../../src/tracing/trace-store.js';
import { asp } from '../helpers/cli.js';
import { useLangfuseReceiver } from '../helpers/langfuse-receiver.js';
import { traceFixture } from '../helpers/trace-fixtures.js';

/** An ASP_HOME with three stored traces (exported, queued, local) and one damaged file. */
async function seededHome(): Promise<{ home: string; store: TraceStore; documents: Record<string, TraceDocument> }> {
  const home = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-traces-cli-')), 'home');
  const store = new TraceStore(home);
  const documents: Record<string, TraceDocument> = {};
  for (const [index, taskId] of ['task-sent', 'task-queued', 'task-local'].entries()) {
    const document = await traceFixture({ taskId, runId: `run-${index}` });
    document.trace.timestamp = new Date(Date.parse(document.trace.timestamp) + index * 60_000).toISOString();
    document.scores = probeScores(document, { usage: [], tests: { passed: 3, total: 3 } });
    await store.save(document);
    documents[taskId] = document;
  }
  const sent = documents['task-sent'] as TraceDocument;
  await store.recordExport({ taskId: 'task-sent', traceId: sent.trace.id, url: `https://langfuse.example/trace/${sent.trace.id}`, exportedAt: new Date().toISOString(), spans: 10, scores: 3 });
  await store.enqueue(documents['task-queued'] as TraceDocument);
  writeFileSync(path.join(store.tracesDir, 'task-broken.json'), '{"schema": "asp.trace/v1", "trace": {');
  return { home, store, documents };
}

const oneLine = (stderr: string) => stderr.trim().split('\n');

describe('asp traces: reading the store', () => {
  let seeded: Awaited<ReturnType<typeof seededHome>>;
  beforeAll(async () => {
    seeded = await seededHome();
  });
  const env = () => ({ ASP_HOME: seeded.home });

  it('lists task, status, duration, cost and exported?, newest first, with the damaged file listed', async () => {
    const result = await asp(['traces', 'ls'], env());
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^TASK\s+STATUS\s+STARTED\s+DURATION\s+COST\s+EXPORTED$/);
    expect(lines[1]).toMatch(/^task-local\s+passed\s+2026-08-01 10:02:00\s+2\.\ds\s+\$0\.02\s+no$/);
    expect(lines[2]).toMatch(/^task-queued\s+passed\s+.*\s+queued$/);
    expect(lines[3]).toMatch(/^task-sent\s+passed\s+.*\s+yes$/);
    expect(lines[4]).toMatch(/^task-broken\.json\s+damaged\s+-\s+-\s+-\s+- \(not JSON/);
  });

  it('lists as JSON', async () => {
    const result = await asp(['traces', 'ls', '--json'], env());
    expect(result.code).toBe(0);
    const rows = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
    expect(rows.map((row) => row.task ?? row.file)).toEqual(['task-local', 'task-queued', 'task-sent', 'task-broken.json']);
    expect(rows[2]).toMatchObject({ status: 'passed', exported: 'exported', costUsd: 0.02, traceId: seeded.documents['task-sent']?.trace.id });
    expect(rows[3]).toMatchObject({ status: 'damaged', damaged: expect.stringMatching(/^not JSON/) });
  });

  it('shows one trace as a timeline', async () => {
    const result = await asp(['traces', 'show', 'task-sent'], env());
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')[0]).toMatch(/^task-sent {2}PASSED {2}2\.\ds {2}exit 0$/);
    expect(result.stdout).toContain('trace    in Langfuse: https://langfuse.example/trace/');
    expect(result.stdout).toMatch(/\| review\s+200ms {2}ok/);
  });

  it('exports the JSON document (the default) and the markdown report with the Langfuse link', async () => {
    const json = await asp(['traces', 'export', 'task-sent'], env());
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(seeded.documents['task-sent']);
    const md = await asp(['traces', 'export', 'task-sent', '--format', 'md'], env());
    expect(md.code).toBe(0);
    expect(md.stdout).toMatch(/^# asp task report: task-sent\n/);
    expect(md.stdout).toContain(`| Langfuse | [${seeded.documents['task-sent']?.trace.id}](https://langfuse.example/trace/`);
    expect(md.stdout).toContain('## PROBE scores');
  });

  it.each([
    ['an unknown --format', ['traces', 'export', 'task-sent', '--format', 'xml'], /--format "xml" is not a trace format — use json or md/],
    ['an unknown task', ['traces', 'show', 'task-nope'], /no trace for task "task-nope"/],
    ['a path for a task', ['traces', 'export', '../../etc/passwd'], /"..\/..\/etc\/passwd" is not a task id/],
    ['a damaged trace', ['traces', 'show', 'task-broken'], /the trace of "task-broken" is damaged/],
    ['push without Langfuse keys', ['traces', 'push', '--all'], /traces push needs Langfuse keys — set LANGFUSE_PUBLIC_KEY/],
    ['a task and --all', ['traces', 'push', 'task-sent', '--all'], /a task and --all both given/],
  ])('rejects %s with exit 2 and one line', async (_what, args, message) => {
    const result = await asp(args, env());
    expect(result.code).toBe(2);
    expect(oneLine(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(message);
  });

  it.each([
    ['an unknown --trace mode', ['--trace', 'datadog'], /--trace "datadog" is not a trace mode — use one of langfuse, json, off/],
    ['--trace langfuse without keys', ['--trace', 'langfuse'], /--trace langfuse needs Langfuse keys/],
  ])('asp run rejects %s with exit 2 before anything is made', async (_what, flags, message) => {
    const workspaces = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-traces-cli-')), 'ws');
    const result = await asp(['run', '--repo', '.', '--step', 'a=true', ...flags], { ASP_WORKSPACES: workspaces, ASP_HOME: seeded.home });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(existsSync(workspaces) ? readdirSync(workspaces) : []).toEqual([]);
  });
});

describe('asp traces push against a local Langfuse', () => {
  const receiver = useLangfuseReceiver();
  const env = (home: string) => ({ ASP_HOME: home, LANGFUSE_PUBLIC_KEY: receiver.publicKey, LANGFUSE_SECRET_KEY: receiver.secretKey, LANGFUSE_BASE_URL: receiver.url });

  it('keeps the outbox when Langfuse is down (exit 3), then delivers it once it is back, leaving damaged files in place', async () => {
    const { home, store, documents } = await seededHome();
    writeFileSync(path.join(store.outboxDir, 'ffffffffffffffffffffffffffffffff.json'), 'garbage');
    await receiver.setMode('down');
    const down = await asp(['traces', 'push'], env(home));
    expect(down.code).toBe(3);
    expect(down.stdout).toMatch(/^failed task-queued \(trace [0-9a-f]{32}\): cannot reach Langfuse at /m);
    expect(down.stdout).toMatch(/^damaged .*ffffffffffffffffffffffffffffffff\.json: not JSON .*\(left in place\)$/m);
    expect(readdirSync(store.outboxDir)).toHaveLength(2);

    await receiver.setMode('ok');
    const up = await asp(['traces', 'push', '--all', '--json'], env(home));
    expect(up.code).toBe(0);
    const outcome = JSON.parse(up.stdout);
    expect(outcome.delivered).toEqual([
      expect.objectContaining({ taskId: 'task-queued', traceId: documents['task-queued']?.trace.id, url: `${receiver.url}/trace/${documents['task-queued']?.trace.id}` }),
    ]);
    expect(outcome.damaged).toEqual([{ file: 'ffffffffffffffffffffffffffffffff.json', reason: expect.stringMatching(/^not JSON/) }]);
    expect(readdirSync(store.outboxDir)).toEqual(['ffffffffffffffffffffffffffffffff.json']);
    expect(new Set(receiver.spans.map((span) => span.traceId))).toEqual(new Set([documents['task-queued']?.trace.id]));

    const listed = await asp(['traces', 'ls'], env(home));
    expect(listed.stdout).toMatch(/^task-queued\s+.*\s+yes$/m);
  });

  it('sends one task by name, even one that was never queued', async () => {
    const { home, documents } = await seededHome();
    const result = await asp(['traces', 'push', 'task-local'], env(home));
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^sent task-local \\(\\d+ spans, 3 scores\\): ${receiver.url}/trace/${documents['task-local']?.trace.id}$`, 'm'));
    expect(new Set(receiver.spans.map((span) => span.traceId))).toEqual(new Set([documents['task-local']?.trace.id]));
  });
});
