import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSettings } from '../../src/config/settings.js';
import { asp } from '../helpers/cli.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { useLangfuseReceiver } from '../helpers/langfuse-receiver.js';
import type { DecodedSpan } from '../helpers/otlp-decode.js';
import { helloRepo, repoWith } from '../helpers/repos.js';
import { run } from '../helpers/run.js';

/**
 * Issue 20: what a Langfuse user sees, decoded from what reaches a local Langfuse receiver (OTLP spans and the public
 * scores API) for real runs: the ASP pipeline on its cassette, a batch of two tasks, a --hitl task deferred then
 * approved, a failing task.
 */
const CASSETTE = path.resolve(import.meta.dirname, '..', '..', 'examples', 'asp-demo', 'cassette.json');

describe.skipIf(!dockerAvailable)('traces as Langfuse shows them', () => {
  const receiver = useLangfuseReceiver();
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  const root = (traceId: string): DecodedSpan | undefined => receiver.spans.find((span) => span.traceId === traceId && span.parentSpanId === null);
  const spansOf = (traceId: string) => receiver.spans.filter((span) => span.traceId === traceId);
  const env = (settings: ReturnType<typeof testSettings>, extra: Record<string, string> = {}) => ({
    DOCKER_HOST: process.env.DOCKER_HOST,
    ASP_WORKSPACES: settings.workspacesRoot,
    ASP_HOME: settings.home,
    LANGFUSE_PUBLIC_KEY: receiver.publicKey,
    LANGFUSE_SECRET_KEY: receiver.secretKey,
    LANGFUSE_BASE_URL: receiver.url,
    ...extra,
  });

  it('the ASP pipeline on its cassette: agents and evaluators, generations named after their agents, one session and user, the environment on spans and scores', async () => {
    const settings = testSettings({
      langfuse: receiver.target,
      models: readSettings({ ASP_MODEL: `cassette:${CASSETTE}` }).models,
      trace: { environment: 'ci', release: 'nightly-7', user: 'someone-else' },
    });
    const { result } = await run(settings, { repo: helloRepo(), task: 'Add a greetAll function', pipeline: 'asp' }, { session: 'sprint-12', user: 'octocat' });
    expect(result.status).toBe('passed');
    expect(result.traceDelivery).toBe('exported');
    const spans = spansOf(result.traceId);
    expect(spans.length).toBeGreaterThan(10);
    for (const span of spans) {
      expect(span.attributes, span.name).toMatchObject({ 'langfuse.session.id': 'sprint-12', 'langfuse.user.id': 'octocat', 'langfuse.environment': 'ci', 'langfuse.release': 'nightly-7' });
      expect(span.resource).toMatchObject({ 'service.name': 'asp-runner' });
    }
    const typeOf = (name: string) => spans.find((span) => span.name === name)?.attributes['langfuse.observation.type'];
    expect(['planning_agent', 'design_agent', 'design_review_agent', 'code_agent', 'code_review_agent', 'test_agent', 'postmortem_agent', 'host:clone'].map(typeOf)).toEqual([
      'agent',
      'agent',
      'evaluator',
      'agent',
      'evaluator',
      'agent',
      'agent',
      'span',
    ]);
    // Generations are named after the agent that asked, with their cost in parts.
    const generations = spans.filter((span) => span.attributes['langfuse.observation.type'] === 'generation');
    expect(generations.length).toBeGreaterThanOrEqual(7);
    expect(new Set(generations.map((span) => span.name))).toEqual(
      new Set(['planning_agent', 'design_agent', 'design_review_agent', 'code_agent', 'code_review_agent', 'test_agent', 'postmortem_agent']),
    );
    // An agent's span output is its artifact.
    const planning = spans.find((span) => span.name === 'planning_agent');
    expect(JSON.parse(String(planning?.attributes['langfuse.observation.output']))).toMatchObject({ task: 'Add a greetAll function' });
    // Every PROBE score (and every other) in the same environment as the spans.
    const scores = receiver.scores.filter((score) => score.traceId === result.traceId);
    expect(scores.length).toBeGreaterThanOrEqual(4);
    expect(new Set(scores.map((score) => score.environment))).toEqual(new Set(['ci']));
    // The root's own metadata does not leak into the trace's.
    expect(Object.keys(root(result.traceId)?.attributes ?? {}).filter((key) => key.startsWith('langfuse.observation.metadata.'))).toEqual([]);
  }, 300_000);

  it('a batch of two: both traces in one session, the batch id, by the CI actor', async () => {
    const settings = testSettings();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-view-batch-'));
    const list = path.join(dir, 'tasks.jsonl');
    const report = path.join(dir, 'report.json');
    const repo = repoWith({ 'README.md': 'x\n' });
    writeFileSync(
      list,
      [
        { id: 'view-a', repo, steps: [{ name: 'test', run: 'true' }] },
        { id: 'view-b', repo, steps: [{ name: 'test', run: 'true' }] },
      ]
        .map((line) => JSON.stringify(line))
        .join('\n') + '\n',
    );
    const ran = await asp(['batch', list, '--report', report, '--trace', 'langfuse'], env(settings, { GITHUB_ACTOR: 'ci-bot', LANGFUSE_TRACING_ENVIRONMENT: 'batch-env' }));
    expect(ran.code, ran.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(report, 'utf8')) as { batchId: string; tasks: Array<{ traceId: string }> };
    expect(summary.tasks).toHaveLength(2);
    for (const task of summary.tasks) {
      expect(root(task.traceId)?.attributes).toMatchObject({ 'langfuse.session.id': summary.batchId, 'langfuse.user.id': 'ci-bot', 'langfuse.environment': 'batch-env' });
    }
  }, 300_000);

  it('a --hitl task deferred, then approved: every export says its HITL state, in the metadata and the tags', async () => {
    const settings = testSettings({ langfuse: receiver.target });
    const { result } = await run(
      settings,
      { repo: helloRepo(), task: 'change it', hitl: true, steps: [{ name: 'edit', run: 'echo more >> README.md && git add -A && git commit -qm more' }] },
      { decision: 'defer' },
    );
    expect(result.status).toBe('awaiting_approval');
    const first = receiver.requests.length;
    expect(first).toBeGreaterThan(0);
    // Two exports of the run (finished: awaiting approval; the gate: deferred), each right for its moment.
    const states = (traceId: string) =>
      receiver.spans
        .filter((span) => span.traceId === traceId && span.parentSpanId === null)
        .map((span) => [span.attributes['langfuse.trace.metadata.hitl_required'], span.attributes['langfuse.trace.metadata.hitl_status'], span.attributes['langfuse.trace.tags']]);
    expect(states(result.traceId)).toEqual([
      ['true', 'awaiting_approval', ['asp', 'passed', 'hitl:awaiting_approval']],
      ['true', 'deferred', ['asp', 'passed', 'hitl:deferred']],
    ]);
    receiver.reset();
    const approved = await asp(['approve', result.taskId, '--comment', 'looks right'], env(settings));
    expect(approved.code, approved.stderr).toBe(0);
    expect(states(result.traceId)).toEqual([['true', 'approved', ['asp', 'passed', 'hitl:approved']]]);
    expect(receiver.scores.find((score) => score.name === 'hitl_decision')).toMatchObject({ value: 1, environment: 'default' });
  }, 300_000);

  it('a failing task: its step an ERROR tool span, the step it never reached a skipped span, probe_accuracy over the plan', async () => {
    const settings = testSettings({ langfuse: receiver.target });
    const { result } = await run(settings, {
      repo: repoWith({ 'README.md': 'x\n' }),
      steps: [
        { name: 'build', run: 'true' },
        { name: 'test', run: 'echo "1 failing"; exit 1' },
        { name: 'deploy_agent', run: 'true' },
      ],
    });
    expect(result.status).toBe('failed');
    const spans = spansOf(result.traceId);
    const step = (name: string) => spans.find((span) => span.name === name)?.attributes;
    expect(step('test')).toMatchObject({ 'langfuse.observation.type': 'tool', 'langfuse.observation.level': 'ERROR', 'langfuse.observation.status_message': 'exit code 1' });
    expect(step('deploy_agent')).toMatchObject({ 'langfuse.observation.type': 'agent', 'langfuse.observation.level': 'DEFAULT', 'langfuse.observation.status_message': 'skipped' });
    expect(root(result.traceId)?.attributes['langfuse.trace.tags']).toEqual(['asp', 'failed']);
    const accuracy = receiver.scores.find((score) => score.traceId === result.traceId && score.name === 'probe_accuracy');
    expect(accuracy).toMatchObject({ value: 0.333333, comment: expect.stringContaining('1/3 steps passed') });
  }, 300_000);
});
