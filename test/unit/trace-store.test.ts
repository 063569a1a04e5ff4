import { chmodSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { probeScores } from '../../src/tracing/probe-scores.js';
import { markdownReport } from '../../src/tracing/trace-report.js';
import { parseTraceDocument } from '../../src/tracing/trace-schema.js';
import { TraceStore } from '../../src/tracing/trace-store.js';
import { formatTimeline } from '../../src/tracing/trace-timeline.js';
import { traceFixture } from '../helpers/trace-fixtures.js';

const home = () => mkdtempSync(path.join(os.tmpdir(), 'asp-store-'));

describe('trace store', () => {
  it('saves and reads back a trace by task id, writing through a temporary file', async () => {
    const store = new TraceStore(home());
    const document = await traceFixture({ taskId: 'task-saved' });
    await store.save(document);
    expect(await store.read('task-saved')).toEqual(document);
    expect(readdirSync(store.tracesDir)).toEqual(['task-saved.json']);
  });

  it('says NOT_FOUND for an unknown task and BAD_INPUT for a name that is not a task id', async () => {
    const store = new TraceStore(home());
    await expect(store.read('task-missing')).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no trace for task "task-missing"/) });
    await expect(store.read('../../etc/passwd')).rejects.toMatchObject({ code: 'BAD_INPUT', message: expect.stringMatching(/is not a task id/) });
  });

  it('lists damaged and unreadable files next to the good ones', async () => {
    const store = new TraceStore(home());
    await store.save(await traceFixture({ taskId: 'task-good' }));
    writeFileSync(path.join(store.tracesDir, 'task-truncated.json'), '{"schema":"asp.trace/v1","tr');
    writeFileSync(path.join(store.tracesDir, 'task-wrong.json'), JSON.stringify({ schema: 'asp.trace/v1', trace: { id: 'nope' }, observations: [], scores: [] }));
    writeFileSync(path.join(store.tracesDir, 'task-locked.json'), '{}');
    chmodSync(path.join(store.tracesDir, 'task-locked.json'), 0o000);
    const listed = Object.fromEntries((await store.list()).map((entry) => [path.basename(entry.file), entry.damaged ?? 'ok']));
    expect(listed['task-good.json']).toBe('ok');
    expect(listed['task-truncated.json']).toMatch(/^not JSON/);
    expect(listed['task-wrong.json']).toMatch(/^not an asp.trace\/v1 document: trace.id must be 32 lowercase hex digits/);
    // root reads a 000 file anyway; either way it is not a trace.
    expect(listed['task-locked.json']).toMatch(/EACCES|not an asp.trace\/v1 document/);
    await expect(store.read('task-truncated')).rejects.toMatchObject({ code: 'BAD_INPUT', message: expect.stringMatching(/is damaged/) });
  });
});

describe('trace documents read back from disk', () => {
  it('refuses observation ids the Langfuse server would reject the whole batch for', async () => {
    const document = await traceFixture();
    const observation = document.observations[1];
    if (observation) observation.id = 'not-hex';
    expect(() => parseTraceDocument(JSON.stringify(document))).toThrow(/observations.1.id must be 16 lowercase hex digits/);
    const zeros = await traceFixture();
    zeros.trace.id = '0'.repeat(32);
    expect(() => parseTraceDocument(JSON.stringify(zeros))).toThrow(/trace.id must not be all zeros/);
  });
});

describe('reading a trace', () => {
  it('shows a timeline with steps in order, failures, generations and scores', async () => {
    const document = await traceFixture({
      steps: [
        { name: 'plan', durationMs: 300, generation: { model: 'gpt-test', input: 1200, output: 300, costUsd: 0.0125 } },
        { name: 'test', exitCode: 3, durationMs: 900 },
      ],
    });
    document.scores = probeScores(document, { usage: [], review: { score: 0.5 } }, { plannedSteps: 3 });
    const text = formatTimeline(document, 'queued');
    const lines = text.split('\n');
    expect(lines[0]).toBe('task-fixture  FAILED  1.4s  exit 1');
    expect(text).toContain('trace    waiting in the outbox (asp traces push)');
    const order = ['host clone', 'host volume-fill', ' plan ', ' test ', 'host copy-out', 'host cleanup'].map((name) => lines.findIndex((line) => line.includes(name)));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(lines.find((line) => line.includes(' test '))).toMatch(/\+460ms\s+\|\s*█+\s*\| test\s+900ms  FAILED exit 3$/);
    expect(text).toMatch(/└ gpt-test: 1200 in \/ 300 out, \$0.0125/);
    expect(text).toContain('probe_accuracy 0.3333  ·  probe_latency_ms 1450  ·  probe_cost_usd 0.0125  ·  probe_quality_score 0.5');
  });

  it('writes the markdown report: task, repo, outcome, steps with timings, scores, HITL and the Langfuse link', async () => {
    const document = await traceFixture({
      steps: [
        { name: 'plan', durationMs: 300 },
        { name: 'test', durationMs: 1500 },
      ],
    });
    document.scores = probeScores(document, { usage: [], tests: { passed: 3, total: 3 }, review: { score: 0.9 } });
    const url = `https://langfuse.example/trace/${document.trace.id}`;
    const report = markdownReport(document, 'exported', { taskId: 'task-fixture', traceId: document.trace.id, url, exportedAt: '2026-08-01T10:00:05.000Z', spans: 8, scores: 4 });
    expect(report).toMatch(/^# asp task report: task-fixture\n/);
    expect(report).toContain('| Outcome | **passed** (exit 0) in 2.0s |');
    expect(report).toContain('| Repository | /repos/app |');
    expect(report).toContain(`| Langfuse | [${document.trace.id}](${url}) |`);
    expect(report).toContain('> fix the auth bug');
    expect(report).toContain('| 1 | plan | passed | +160ms | 300ms | 0 | `node tools/plan.js` |');
    expect(report).toContain('| 2 | test | passed | +460ms | 1.5s | 0 | `node tools/test.js` |');
    expect(report).toContain('| probe_accuracy | 1 | 3/3 tests passed (.asp/test_results.json) |');
    expect(report).toContain('| probe_quality_score | 0.9 | score of .asp/code_review.json |');
    expect(report).toContain('- Required: no\n- Decision: not_required\n- Pull request: none');
    expect(markdownReport(document, 'local')).toContain('| Langfuse | not exported (local JSON only) |');
  });
});
