import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSettings } from '../../src/config/settings.js';
import { aspAnswers, agentOf, type AspScenario } from '../helpers/asp-answers.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { startFakeOpenAi, type FakeOpenAi, type FakeRequest } from '../helpers/fake-openai.js';
import { helloRepo } from '../helpers/repos.js';
import { artifact, run, trace } from '../helpers/run.js';

const KEY = 'sk-asp-pipeline-test-key-7d2a';

describe.skipIf(!dockerAvailable)('the built-in ASP pipeline in the real sandbox', () => {
  let fake: FakeOpenAi;
  let answers = aspAnswers();

  beforeAll(async () => {
    fake = await startFakeOpenAi((request) => answers(request));
  });
  afterAll(async () => {
    await fake.close();
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  const settings = () => testSettings({ models: readSettings({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.url, ASP_MODEL: 'openai:gpt-4o-mini' }).models });
  const runAsp = async (scenario: AspScenario, extra: Record<string, unknown> = {}) => {
    answers = aspAnswers(scenario);
    const first = fake.requests.length;
    const outcome = await run(settings(), { repo: helloRepo(), task: 'Add a greetAll function', pipeline: 'asp', ...extra });
    return { ...outcome, agents: fake.requests.slice(first).map((request: FakeRequest) => agentOf(request)) };
  };

  it('runs the seven agents, each writing its artifact, and the code agent changes the repository', async () => {
    const { result, output, agents } = await runAsp({ codeHighs: 2 });
    expect(result.status).toBe('passed');
    expect(result.steps.map((step) => [step.name, step.status])).toEqual(
      ['planning', 'design', 'design_review', 'code', 'code_review', 'test', 'postmortem'].map((name) => [`${name}_agent`, 'passed']),
    );
    expect(agents).toEqual(['planning', 'design', 'design_review', 'code', 'code_review', 'test', 'postmortem']);
    for (const name of ['planning.json', 'design.json', 'design_review.json', 'code_manifest.json', 'code_review.json', 'test_results.json', 'postmortem.json']) {
      expect(result.artifacts).toContain(name);
    }
    expect(artifact(result, 'planning.json')).toMatchObject({ complexity: 7 });
    expect(artifact(result, 'code_manifest.json')).toMatchObject({ files: [{ path: 'src/greet.js' }], attempt: 1 });
    // Two High findings: a conditional pass.
    expect(artifact(result, 'code_review.json')).toMatchObject({ status: 'conditional_pass', codeAttempts: 1, score: 0.7 });
    expect(artifact(result, 'test_results.json')).toMatchObject({ command: 'node tools/run-tests.js', passed: 3, total: 3, status: 'passed' });
    expect(result.change?.filesChanged).toBe(1);
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'diff.patch'), 'utf8')).toContain('greetAll');
    expect(output).toContain('3/3 tests passed');

    const document = trace(result);
    const generations = document.observations.filter((observation) => observation.type === 'GENERATION');
    expect(generations).toHaveLength(7);
    const codeStep = document.observations.find((observation) => observation.name === 'code_agent' && observation.type === 'SPAN');
    expect(generations.find((generation) => generation.metadata.step === 'code_agent')?.parentObservationId).toBe(codeStep?.id);
    // Each generation is named after the agent that made it (asp-agent sends X-Asp-Agent), with the temperature it set.
    expect(generations.map((generation) => generation.name)).toEqual(['planning', 'design', 'design_review', 'code', 'code_review', 'test', 'postmortem'].map((name) => `${name}_agent`));
    expect(generations.every((generation) => generation.modelParameters?.temperature === 0)).toBe(true);
    expect(document.scores.find((score) => score.name === 'probe_quality_score')?.value).toBe(0.7);
    expect(document.scores.find((score) => score.name === 'probe_accuracy')?.value).toBe(1);
    expect(document.scores.find((score) => score.name === 'probe_cost_usd')?.value).toBeGreaterThan(0);
    expect(JSON.stringify(document)).not.toContain(KEY);
  });

  it('sends a failed design back to the design agent, and gives up after three designs', async () => {
    const retried = await runAsp({ designFailures: 2 });
    expect(retried.result.status).toBe('passed');
    expect(retried.agents.slice(0, 7)).toEqual(['planning', 'design', 'design_review', 'design', 'design_review', 'design', 'design_review']);
    // The redesigns run inside the design review step, and are named after the design agent that made them.
    const inReview = trace(retried.result).observations.filter((observation) => observation.type === 'GENERATION' && observation.metadata.step === 'design_review_agent');
    expect(inReview.map((generation) => generation.name)).toEqual(['design_review_agent', 'design_agent', 'design_review_agent', 'design_agent', 'design_review_agent']);
    expect(artifact(retried.result, 'design_review.json')).toMatchObject({ gate: { status: 'pass' }, designAttempts: 3 });

    const failed = await runAsp({ designFailures: 3 });
    expect(failed.result.status).toBe('failed');
    expect(failed.result.exitCode).toBe(1);
    expect(failed.result.steps.map((step) => step.status)).toEqual(['passed', 'passed', 'failed', 'skipped', 'skipped', 'skipped', 'skipped']);
    expect(failed.agents.filter((agent) => agent === 'design')).toHaveLength(3);
    expect(artifact(failed.result, 'design_review.json')).toMatchObject({ gate: { status: 'fail' }, designAttempts: 3 });
  });

  it('fails code with five High findings, retries it, and gives up after three', async () => {
    const failed = await runAsp({ codeFailures: 3 });
    expect(failed.result.status).toBe('failed');
    expect(failed.agents.filter((agent) => agent === 'code')).toHaveLength(3);
    expect(failed.agents.filter((agent) => agent === 'code_review')).toHaveLength(3);
    expect(artifact(failed.result, 'code_review.json')).toMatchObject({ status: 'fail', codeAttempts: 3, gate: { counts: { High: 5 } } });
    expect(failed.result.steps.find((step) => step.name === 'code_review_agent')?.status).toBe('failed');
  });

  it('stops the pipeline when its cost budget is spent', async () => {
    const { result } = await runAsp({}, { budget: { maxCostUsd: 0.00005 } });
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/model budget exceeded: \$0\.0000\d+ spent, --max-cost is \$0\.00005/);
    expect(result.models?.calls).toBeLessThan(7);
  });
});

describe.skipIf(!dockerAvailable)('the ASP demo cassette', () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('replays the whole pipeline offline, with no key, through the CLI settings', async () => {
    const cassette = path.resolve(import.meta.dirname, '..', '..', 'examples', 'asp-demo', 'cassette.json');
    const settings = testSettings({ models: readSettings({ ASP_MODEL: `cassette:${cassette}` }).models });
    const { result } = await run(settings, { repo: helloRepo(), task: 'Add a greetAll function', pipeline: 'asp' });
    expect(result.status).toBe('passed');
    expect(result.models).toMatchObject({ provider: 'cassette', calls: 9 });
    expect(artifact(result, 'design_review.json')).toMatchObject({ designAttempts: 2 });
    expect(artifact(result, 'postmortem.json')).toMatchObject({ attempts: { design: 2, code: 1, test: 1 } });
    expect(result.change?.filesChanged).toBe(1);
  });
});
