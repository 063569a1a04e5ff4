import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pushTraces } from '../../src/tracing/push-traces.js';
import { TraceStore } from '../../src/tracing/trace-store.js';
import { asp } from '../helpers/cli.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { startLangfuseReceiver, type LangfuseReceiver, type ReceiverMode } from '../helpers/langfuse-receiver.js';
import { helloRepo, repoWith } from '../helpers/repos.js';
import { run, trace } from '../helpers/run.js';

const SEED_METADATA = ['task_id', 'target_repo', 'target_branch', 'workspace_path', 'pr_url', 'hitl_required', 'hitl_status'];
const PROBE = ['probe_accuracy', 'probe_cost_usd', 'probe_latency_ms', 'probe_quality_score'];

describe.skipIf(!dockerAvailable)('asp run traced to a local Langfuse, against the real Docker engine', () => {
  let receiver: LangfuseReceiver;
  beforeAll(async () => {
    receiver = await startLangfuseReceiver();
  });
  afterAll(async () => {
    await receiver.close();
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });
  afterEach(async () => {
    await receiver.setMode('ok');
    receiver.reset();
  });

  it('sends the demo run as one trace: seed metadata, a span per step, the four PROBE scores', async () => {
    const settings = testSettings({ langfuse: receiver.target });
    const { result } = await run(settings, { repo: helloRepo(), task: 'demo' });
    expect(result.status).toBe('passed');
    expect(result.traceDelivery).toBe('exported');
    expect(result.warnings).toEqual([]);

    const document = trace(result);
    const spans = receiver.spans.filter((span) => span.traceId === result.traceId);
    expect(spans).toHaveLength(document.observations.length);
    const root = spans.find((span) => span.parentSpanId === null);
    expect(root?.attributes['langfuse.trace.name']).toBe(result.taskId);
    for (const key of SEED_METADATA) expect(typeof root?.attributes[`langfuse.trace.metadata.${key}`], key).toBe('string');
    expect(root?.attributes).toMatchObject({ 'langfuse.trace.metadata.task_id': result.taskId, 'langfuse.trace.metadata.target_branch': 'main', 'langfuse.trace.metadata.hitl_required': 'false' });
    const steps = spans.filter((span) => span.attributes['langfuse.observation.metadata.kind'] === 'step');
    // The demo pipeline's four steps, and its clean-room check's one.
    expect(steps.map((span) => span.name).sort()).toEqual(['check:tests', 'design', 'plan', 'review', 'test']);
    expect(steps.every((span) => span.attributes['langfuse.observation.level'] === 'DEFAULT' && span.parentSpanId === root?.spanId)).toBe(true);

    expect(receiver.scores.map((score) => score.name).sort()).toEqual(PROBE);
    // The demo's review scores 1 with 3/3 tests passing; the same scores are in the local JSON.
    expect(Object.fromEntries(document.scores.map((score) => [score.name, score.value]))).toMatchObject({ probe_accuracy: 1, probe_quality_score: 1, probe_latency_ms: result.durationMs });
    const store = new TraceStore(settings.home);
    expect((await store.read(result.taskId)).trace.id).toBe(result.traceId);
    expect(await store.outbox()).toEqual([]);
  });

  it.each<ReceiverMode>(['down', '500', 'slow'])('with Langfuse %s the run still passes, within 6 s of its work, and traces push delivers it once', async (mode) => {
    const settings = testSettings({ langfuse: receiver.target });
    await receiver.setMode(mode);
    const started = Date.now();
    const { result } = await run(settings, { repo: repoWith({ 'README.md': 'x\n' }), steps: [{ name: 'work', run: 'echo working' }] });
    const wall = Date.now() - started;
    expect(result.status).toBe('passed');
    expect(result.exitCode).toBe(0);
    expect(result.traceDelivery).toBe('queued');
    // result.durationMs is the task's own work (clone to cleanup); what follows it is the bounded export.
    expect(wall - result.durationMs).toBeLessThan(6000);
    expect(result.warnings).toEqual([expect.stringMatching(/the trace waits in the outbox: send it with asp traces push /)]);
    expect(existsSync(result.tracePath)).toBe(true);

    await receiver.setMode('ok');
    receiver.reset();
    const store = new TraceStore(settings.home);
    const outcome = await pushTraces(store, receiver.target, { budgetMs: 5000 });
    expect(outcome.delivered.map((entry) => entry.traceId)).toEqual([result.traceId]);
    const ids = receiver.spans.map((span) => span.spanId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(
      trace(result)
        .observations.map((observation) => observation.id)
        .sort(),
    );
    expect(receiver.scores.map((score) => score.name).sort()).toEqual(['probe_accuracy', 'probe_cost_usd', 'probe_latency_ms']);
    expect(await store.outbox()).toEqual([]);
  });

  it('says so in exactly one warning line on the terminal when Langfuse is down', async () => {
    await receiver.setMode('down');
    const base = mkdtempSync(path.join(os.tmpdir(), 'asp-trace-cli-'));
    const cli = await asp(['run', '--repo', repoWith({ 'README.md': 'x\n' }), '--step', 'work=true'], {
      ASP_WORKSPACES: path.join(base, 'ws'),
      ASP_HOME: path.join(base, 'home'),
      LANGFUSE_PUBLIC_KEY: receiver.publicKey,
      LANGFUSE_SECRET_KEY: receiver.secretKey,
      LANGFUSE_BASE_URL: receiver.url,
    });
    expect(cli.code).toBe(0);
    const warnings = cli.stderr.split('\n').filter((line) => /warning|\[Langfuse SDK\]|Warning:/i.test(line));
    expect(warnings).toEqual([expect.stringMatching(/^asp: warning: cannot reach Langfuse at .*; the trace waits in the outbox: send it with asp traces push task-/)]);
    expect(cli.stderr).toMatch(/trace: .*trace\.json \(in the outbox: asp traces push\)/);
  });
});
