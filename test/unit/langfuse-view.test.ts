import { describe, expect, it } from 'vitest';
import { ASP_VERSION } from '../../src/core/version.js';
import { recordDelivery } from '../../src/tracing/hitl-trace.js';
import { exportToLangfuse } from '../../src/tracing/langfuse-exporter.js';
import { probeScores } from '../../src/tracing/probe-scores.js';
import type { TraceDocument } from '../../src/tracing/trace-model.js';
import { TraceRecorder, type PlannedStep, type TraceStart } from '../../src/tracing/trace-recorder.js';
import { useLangfuseReceiver } from '../helpers/langfuse-receiver.js';
import { manualClock } from '../helpers/trace-fixtures.js';

/** A run as the supervisor records it: a host phase, the planned steps of which `ran` ran (each exiting 0), finished. */
async function recorded(options: {
  start?: Partial<TraceStart>;
  planned: PlannedStep[];
  ran: string[];
  output?: string;
  hitl?: { required: boolean; awaiting: boolean };
  artifacts?: Record<string, unknown>;
}): Promise<TraceDocument> {
  const clock = manualClock();
  const recorder = new TraceRecorder({ taskId: 'task-view', runId: 'run-1', task: 'the task', repo: '/repos/app', ref: undefined, workspacePath: '/tmp/w', limits: {}, ...options.start }, clock);
  await recorder.phase('clone', async () => clock.advance(50));
  recorder.planSteps(options.planned);
  for (const name of options.ran) {
    recorder.onMessage({ type: 'step.start', step: name, run: `run ${name}`, timeoutMs: 60_000, at: clock.now().toISOString() });
    if (options.output) recorder.onMessage({ type: 'step.log', step: name, stream: 'stdout', data: options.output });
    clock.advance(100);
    recorder.onMessage({ type: 'step.end', step: name, exitCode: 0, durationMs: 100 });
  }
  for (const [step, value] of Object.entries(options.artifacts ?? {})) recorder.setStepArtifact(step, `${step}.json`, value);
  return recorder.finish({ status: 'passed', exitCode: 0, durationMs: 500, ...(options.hitl ? { hitl: options.hitl } : {}) });
}

describe('what a Langfuse user sees of a trace', () => {
  const receiver = useLangfuseReceiver();

  it('every span carries the session, the user, the environment and the release; every score the environment; the resource names asp and its version', async () => {
    const document = await recorded({ start: { sessionId: 'batch-abc', userId: 'octocat', environment: 'ci', release: 'r-42' }, planned: [{ name: 'test' }], ran: ['test'] });
    document.scores = probeScores(document, { tests: { passed: 1, total: 1 }, usage: [] }, { plannedSteps: 1 });
    expect(document.trace).toMatchObject({ sessionId: 'batch-abc', userId: 'octocat', environment: 'ci', release: 'r-42', version: ASP_VERSION });
    await exportToLangfuse(document, { ...receiver.target, environment: 'another' });
    expect(receiver.spans.length).toBe(document.observations.length);
    for (const span of receiver.spans) {
      expect(span.attributes, span.name).toMatchObject({ 'langfuse.session.id': 'batch-abc', 'langfuse.user.id': 'octocat', 'langfuse.environment': 'ci', 'langfuse.release': 'r-42' });
      expect(span.resource).toMatchObject({ 'service.name': 'asp-runner', 'service.version': ASP_VERSION });
    }
    expect(receiver.scores.length).toBeGreaterThan(0);
    expect(receiver.scores.map((score) => score.environment)).toEqual(receiver.scores.map(() => 'ci'));
  });

  it("a trace written before asp recorded its environment gets this run's, else Langfuse's default", async () => {
    const document = await recorded({ planned: [], ran: [] });
    delete document.trace.environment;
    document.scores = probeScores(document, { usage: [] }, { plannedSteps: 0 });
    await exportToLangfuse(document, { ...receiver.target, environment: 'staging' });
    expect(new Set(receiver.spans.map((span) => span.attributes['langfuse.environment']))).toEqual(new Set(['staging']));
    expect(new Set(receiver.scores.map((score) => score.environment))).toEqual(new Set(['staging']));
    receiver.reset();
    await exportToLangfuse(document, receiver.target);
    expect(new Set(receiver.scores.map((score) => score.environment))).toEqual(new Set(['default']));
  });

  it('types each observation: *_agent steps agent, review agents evaluator, other steps and check steps tool, host phases span; the pipeline may say otherwise', async () => {
    const planned: PlannedStep[] = [{ name: 'design_agent' }, { name: 'code_review_agent' }, { name: 'test' }, { name: 'check:tests' }, { name: 'lint', type: 'guardrail' }];
    const document = await recorded({ planned, ran: planned.map((step) => step.name) });
    await exportToLangfuse(document, receiver.target);
    const typeOf = (name: string) => receiver.spans.find((span) => span.name === name)?.attributes['langfuse.observation.type'];
    expect(['design_agent', 'code_review_agent', 'test', 'check:tests', 'lint', 'host:clone'].map(typeOf)).toEqual(['agent', 'evaluator', 'tool', 'tool', 'guardrail', 'span']);
  });

  it('the root span holds no metadata of its own: the trace metadata has only its documented keys', async () => {
    const document = await recorded({ planned: [], ran: [] });
    await exportToLangfuse(document, receiver.target);
    const root = receiver.spans.find((span) => span.parentSpanId === null);
    expect(Object.keys(root?.attributes ?? {}).filter((key) => key.startsWith('langfuse.observation.metadata.'))).toEqual([]);
  });

  it('says the HITL state in the first export, and the decision in the tags once made', async () => {
    const document = await recorded({ planned: [{ name: 'code_agent' }], ran: ['code_agent'], hitl: { required: true, awaiting: true } });
    expect(document.trace.metadata).toMatchObject({ hitl_required: true, hitl_status: 'awaiting_approval' });
    expect(document.trace.tags).toEqual(['asp', 'passed', 'hitl:awaiting_approval']);
    await exportToLangfuse(document, receiver.target);
    expect(receiver.spans.find((span) => span.parentSpanId === null)?.attributes).toMatchObject({
      'langfuse.trace.metadata.hitl_required': 'true',
      'langfuse.trace.metadata.hitl_status': 'awaiting_approval',
      'langfuse.trace.tags': ['asp', 'passed', 'hitl:awaiting_approval'],
    });
    recordDelivery(document, true, [{ hitlStatus: 'rejected', decidedBy: 'ana' }]);
    expect(document.trace.tags).toEqual(['asp', 'passed', 'hitl:rejected']);
    // Without a gate: no HITL tag, and the state says so.
    const plain = await recorded({ planned: [], ran: [], hitl: { required: false, awaiting: false } });
    expect(plain.trace.tags).toEqual(['asp', 'passed']);
    expect(plain.trace.metadata).toMatchObject({ hitl_required: false, hitl_status: 'not_required' });
  });

  it('gives a step that never started a span of its own, level DEFAULT, status skipped, and probe_accuracy still counts the plan', async () => {
    const document = await recorded({ planned: [{ name: 'build' }, { name: 'test' }, { name: 'deploy_agent' }], ran: ['build'] });
    const skipped = document.observations.filter((observation) => observation.statusMessage === 'skipped');
    expect(skipped.map((observation) => [observation.name, observation.level, observation.asType])).toEqual([
      ['test', 'DEFAULT', 'tool'],
      ['deploy_agent', 'DEFAULT', 'agent'],
    ]);
    const accuracy = probeScores(document, { usage: [] }, { plannedSteps: 3 }).find((score) => score.name === 'probe_accuracy');
    expect(accuracy).toMatchObject({ value: 0.333333, comment: '1/3 steps passed' });
  });

  it('cuts a long step output at a line boundary and says so; an agent step shows its artifact instead', async () => {
    const line = 'x'.repeat(99) + '\n';
    const document = await recorded({
      planned: [{ name: 'noisy' }, { name: 'plan_agent', artifact: 'plan_agent.json' }],
      ran: ['noisy', 'plan_agent'],
      output: line.repeat(300),
      artifacts: { plan_agent: { steps: ['a', 'b'] } },
    });
    const noisy = document.observations.find((observation) => observation.name === 'noisy');
    const tail = (noisy?.output as { tail: string }).tail;
    expect(tail).toMatch(/^\[asp: the first \d+ characters of the output are not here; all of it is in \.asp\/events\.jsonl \(its step\.log lines\)\]\n/);
    expect(
      tail
        .split('\n')
        .slice(1, -1)
        .every((kept) => kept === 'x'.repeat(99)),
    ).toBe(true);
    const plan = document.observations.find((observation) => observation.name === 'plan_agent');
    expect(plan?.output).toEqual({ steps: ['a', 'b'] });
    expect(plan?.metadata.artifact).toBe('.asp/plan_agent.json');
  });
});
