import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSettings, type Settings } from '../../src/config/settings.js';
import { silentLog } from '../../src/core/log.js';
import { publishTrace, type PublishOptions } from '../../src/tracing/publish-trace.js';
import { pushTraces } from '../../src/tracing/push-traces.js';
import type { TraceDocument } from '../../src/tracing/trace-model.js';
import { TraceStore } from '../../src/tracing/trace-store.js';
import { useLangfuseReceiver, type LangfuseReceiver, type ReceiverMode } from '../helpers/langfuse-receiver.js';
import { traceFixture } from '../helpers/trace-fixtures.js';

function settingsFor(receiver: LangfuseReceiver | undefined): Settings {
  const base = mkdtempSync(path.join(os.tmpdir(), 'asp-delivery-'));
  return { ...readSettings({ HOME: base }), home: path.join(base, 'home'), workspacesRoot: path.join(base, 'workspaces'), langfuse: receiver?.target };
}

/** A task's host `.asp/` as the copy-out leaves it, with the seed's artifacts. */
function artifactsDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-artifacts-'));
  writeFileSync(path.join(dir, 'test_results.json'), JSON.stringify({ passed: 3, failed: 0, total: 3 }));
  writeFileSync(path.join(dir, 'code_review.json'), JSON.stringify({ score: 1 }));
  return dir;
}

/** The task's `.asp-host/`, where the trace's master copy goes. */
function stateDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'asp-host-'));
}

async function publish(document: TraceDocument, settings: Settings, extra: Partial<PublishOptions> = {}) {
  const warnings: string[] = [];
  const dir = artifactsDir();
  const host = stateDir();
  const started = Date.now();
  const published = await publishTrace(document, { settings, artifactsDir: dir, stateDir: host, plannedSteps: 3, log: silentLog, warn: (message) => warnings.push(message), ...extra });
  return { published, warnings, ms: Date.now() - started, dir, host };
}

describe('trace delivery: local JSON always, Langfuse when on, the outbox when Langfuse fails', () => {
  const receiver = useLangfuseReceiver();

  it('writes .asp/trace.json and the trace store with the PROBE scores, and sends the trace', async () => {
    const settings = settingsFor(receiver);
    const document = await traceFixture({ taskId: 'task-ok' });
    const { published, warnings, dir } = await publish(document, settings);
    expect(published).toMatchObject({ delivery: 'exported', url: `${receiver.url}/trace/${document.trace.id}` });
    expect(warnings).toEqual([]);
    const local = JSON.parse(readFileSync(path.join(dir, 'trace.json'), 'utf8')) as TraceDocument;
    expect(local.scores.map((score) => score.name).sort()).toEqual(['probe_accuracy', 'probe_cost_usd', 'probe_latency_ms', 'probe_quality_score']);
    const store = new TraceStore(settings.home);
    expect(await store.read('task-ok')).toEqual(local);
    expect(await store.exportRecord(document.trace.id)).toMatchObject({ taskId: 'task-ok', url: published.url, spans: document.observations.length, scores: 4 });
    expect(await store.outbox()).toEqual([]);
    expect(receiver.scores).toHaveLength(4);
  });

  it.each<[ReceiverMode, RegExp]>([
    ['down', /^cannot reach Langfuse at .*; the trace waits in the outbox: send it with asp traces push task-down$/],
    ['500', /^Langfuse answered HTTP 500 .*; the trace waits in the outbox: send it with asp traces push task-500$/],
    ['401', /^Langfuse refused the keys .*HTTP 401.*; the trace waits in the outbox: send it with asp traces push task-401$/],
    ['slow', /^Langfuse at .* did not take the trace within 5.0s; the trace waits in the outbox: send it with asp traces push task-slow$/],
  ])('with Langfuse %s: one warning, the trace in the outbox, back within 6 s; traces push then delivers it exactly once', async (mode, warning) => {
    const settings = settingsFor(receiver);
    const document = await traceFixture({ taskId: `task-${mode}` });
    await receiver.setMode(mode);
    const { published, warnings, ms, dir } = await publish(document, settings);
    expect(published.delivery).toBe('queued');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(warning);
    expect(ms).toBeLessThan(6000);
    expect(existsSync(path.join(dir, 'trace.json'))).toBe(true);
    const store = new TraceStore(settings.home);
    expect((await store.outbox()).map((entry) => entry.document?.trace.id)).toEqual([document.trace.id]);
    expect(receiver.spans).toEqual([]);

    await receiver.setMode('ok');
    receiver.reset();
    const outcome = await pushTraces(store, receiver.target, { budgetMs: 5000 });
    expect(outcome).toMatchObject({ failed: [], skipped: [], damaged: [], delivered: [{ taskId: `task-${mode}`, traceId: document.trace.id }] });
    const spanIds = receiver.spans.map((span) => span.spanId);
    expect(spanIds.sort()).toEqual(document.observations.map((observation) => observation.id).sort());
    expect(receiver.scores.map((score) => score.name).sort()).toEqual(['probe_accuracy', 'probe_cost_usd', 'probe_latency_ms', 'probe_quality_score']);
    expect(await store.outbox()).toEqual([]);
    // A second push has nothing left to send: each trace arrived once.
    expect(await pushTraces(store, receiver.target, { budgetMs: 5000 })).toEqual({ delivered: [], failed: [], skipped: [], damaged: [] });
    expect(receiver.spans).toHaveLength(document.observations.length);
  });

  it('publishes the same document again safely: no second set of usage generations, other scores kept', async () => {
    const settings = settingsFor(receiver);
    const document = await traceFixture({ taskId: 'task-twice' });
    const dir = artifactsDir();
    writeFileSync(path.join(dir, 'usage.json'), JSON.stringify({ model: 'gpt-test', costUsd: 0.5 }));
    const options = { settings, artifactsDir: dir, stateDir: stateDir(), log: silentLog, warn: () => {} };
    await publishTrace(document, options);
    document.scores.push({ id: 'hitl-score', traceId: document.trace.id, name: 'hitl_decision', value: 1, dataType: 'NUMERIC', comment: 'approved' });
    await publishTrace(document, options);
    expect(document.observations.filter((observation) => observation.metadata.source === '.asp/usage.json')).toHaveLength(1);
    expect(document.scores.map((score) => score.name).sort()).toEqual(['hitl_decision', 'probe_accuracy', 'probe_cost_usd', 'probe_latency_ms', 'probe_quality_score']);
    expect(document.scores.find((score) => score.name === 'probe_cost_usd')?.value).toBe(0.52);
    expect(receiver.scores.filter((score) => score.name === 'hitl_decision')).toHaveLength(1);
  });

  it('after a failed publish, a second publish of the run updates the outbox without waiting on Langfuse again', async () => {
    const settings = settingsFor(receiver);
    await receiver.setMode('slow');
    const document = await traceFixture({ taskId: 'task-gate' });
    const { published, warnings, dir, host } = await publish(document, settings);
    expect(published.delivery).toBe('queued');
    document.trace.metadata.hitl_status = 'approved';
    const started = Date.now();
    const again = await publishTrace(document, { settings, artifactsDir: dir, stateDir: host, log: silentLog, warn: (message) => warnings.push(message), previous: published });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(again.delivery).toBe('queued');
    expect(warnings).toHaveLength(1);
    const [entry] = await new TraceStore(settings.home).outbox();
    expect(entry?.document?.trace.metadata.hitl_status).toBe('approved');
  });

  it('--trace json with keys queues the trace for a later push and sends nothing now', async () => {
    const settings = settingsFor(receiver);
    const { published, warnings } = await publish(await traceFixture({ taskId: 'task-json' }), settings, { mode: 'json' });
    expect(published.delivery).toBe('queued');
    expect(warnings).toEqual([]);
    expect(receiver.requests).toEqual([]);
    expect(await new TraceStore(settings.home).outbox()).toHaveLength(1);
  });

  it('--trace off sends nothing and queues nothing, but still writes the local JSON', async () => {
    const settings = settingsFor(receiver);
    const { published, dir, host } = await publish(await traceFixture({ taskId: 'task-off' }), settings, { mode: 'off' });
    expect(published.delivery).toBe('local');
    expect(receiver.requests).toEqual([]);
    const store = new TraceStore(settings.home);
    expect(await store.outbox()).toEqual([]);
    // The master copy in .asp-host/ (the one asp reads back), and the user's copy in .asp/, the same document.
    expect(readFileSync(path.join(dir, 'trace.json'), 'utf8')).toBe(readFileSync(path.join(host, 'trace.json'), 'utf8'));
    expect((await store.read('task-off')).trace.name).toBe('task-off');
  });

  it('without Langfuse keys the trace is local only', async () => {
    const settings = settingsFor(undefined);
    const { published, warnings } = await publish(await traceFixture({ taskId: 'task-nokeys' }), settings);
    expect(published.delivery).toBe('local');
    expect(warnings).toEqual([]);
    expect(await new TraceStore(settings.home).outbox()).toEqual([]);
  });

  it('lists damaged outbox files and still pushes the others; a damaged file stays where it is', async () => {
    const settings = settingsFor(receiver);
    await receiver.setMode('down');
    const first = await traceFixture({ taskId: 'task-one', runId: 'a' });
    const second = await traceFixture({ taskId: 'task-two', runId: 'b' });
    await publish(first, settings);
    await publish(second, settings);
    const store = new TraceStore(settings.home);
    writeFileSync(path.join(store.outboxDir, 'ffffffffffffffffffffffffffffffff.json'), '{"schema":"asp.trace/v1","trace":');
    mkdirSync(path.join(store.outboxDir, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.json'));
    await receiver.setMode('ok');
    const outcome = await pushTraces(store, receiver.target, { budgetMs: 5000 });
    expect(outcome.delivered.map((entry) => entry.taskId).sort()).toEqual(['task-one', 'task-two']);
    expect(outcome.damaged).toHaveLength(2);
    expect(outcome.damaged).toEqual(
      expect.arrayContaining([
        { file: 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.json', reason: expect.stringMatching(/EISDIR/) },
        { file: 'ffffffffffffffffffffffffffffffff.json', reason: expect.stringMatching(/^not JSON/) },
      ]),
    );
    expect(readdirSync(store.outboxDir).sort()).toEqual(['eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.json', 'ffffffffffffffffffffffffffffffff.json']);
  });

  it('stops trying once Langfuse is unreachable and keeps every entry for next time', async () => {
    const settings = settingsFor(receiver);
    await receiver.setMode('down');
    await publish(await traceFixture({ taskId: 'task-a', runId: 'a' }), settings);
    await publish(await traceFixture({ taskId: 'task-b', runId: 'b' }), settings);
    const store = new TraceStore(settings.home);
    const outcome = await pushTraces(store, receiver.target, { budgetMs: 5000 });
    expect(outcome.delivered).toEqual([]);
    expect(outcome.failed).toHaveLength(1);
    expect(outcome.skipped).toHaveLength(1);
    expect(await store.outbox()).toHaveLength(2);
  });

  it('pushes one task by name, from the store when it was never queued (a --trace off run)', async () => {
    const settings = settingsFor(receiver);
    const document = await traceFixture({ taskId: 'task-later' });
    await publish(document, settings, { mode: 'off' });
    const store = new TraceStore(settings.home);
    const outcome = await pushTraces(store, receiver.target, { taskId: 'task-later', budgetMs: 5000 });
    expect(outcome.delivered).toEqual([expect.objectContaining({ taskId: 'task-later', traceId: document.trace.id })]);
    expect(await store.exportRecord(document.trace.id)).toBeDefined();
    await expect(pushTraces(store, receiver.target, { taskId: 'task-never', budgetMs: 5000 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
