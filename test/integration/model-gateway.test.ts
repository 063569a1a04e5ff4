import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSettings } from '../../src/config/settings.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { startFakeOpenAi, type FakeAnswer, type FakeOpenAi } from '../helpers/fake-openai.js';
import { receivedGeneration, startLangfuseReceiver, type LangfuseReceiver } from '../helpers/langfuse-receiver.js';
import { repoWith } from '../helpers/repos.js';
import { run, trace } from '../helpers/run.js';

const KEY = 'sk-test-never-in-the-sandbox-4f1c9e';

/** A client inside the sandbox, speaking the OpenAI API to whatever OPENAI_BASE_URL says, as agent CLIs do. */
const CLIENT = `
const base = process.env.OPENAI_BASE_URL;
const key = process.env.OPENAI_API_KEY;
const agent = process.env.CLIENT_AGENT;
const ask = async (content, stream) => {
  const response = await fetch(base + '/chat/completions', {
    method: 'POST',
    // A plain call names its agent and sets sampling parameters; the streamed one does neither.
    headers: { 'content-type': 'application/json', authorization: 'Bearer ' + key, ...(agent && !stream ? { 'X-Asp-Agent': agent } : {}) },
    body: JSON.stringify({ model: 'whatever-the-cli-wants', stream, messages: [{ role: 'user', content }], ...(stream ? {} : { temperature: 0.2, max_tokens: 64 }) }),
  });
  if (!stream) {
    const body = await response.json();
    return response.status + ' ' + (body.choices ? body.choices[0].message.content : JSON.stringify(body));
  }
  const text = await response.text();
  const pieces = text.split('\\n\\n').filter((event) => event.startsWith('data: ') && !event.includes('[DONE]'));
  return response.status + ' ' + pieces.map((event) => JSON.parse(event.slice(6)).choices[0].delta.content ?? '').join('');
};
const count = Number(process.argv[2] ?? 1);
for (let index = 0; index < count; index += 1) console.log('plain:', await ask('hello ' + index, false));
console.log('streamed:', await ask('stream me', true));
`;

describe.skipIf(!dockerAvailable)('the model gateway with the real sandbox', () => {
  let fake: FakeOpenAi;
  let receiver: LangfuseReceiver;
  let script: (request: { body: Record<string, unknown> }, index: number) => FakeAnswer | undefined = () => undefined;

  beforeAll(async () => {
    receiver = await startLangfuseReceiver();
    fake = await startFakeOpenAi((request, index) => {
      const planned = script(request, index);
      if (planned) return planned;
      const messages = request.body.messages as Array<{ content: string }>;
      return { content: `echo: ${messages[messages.length - 1]?.content ?? ''}` };
    });
  });

  afterAll(async () => {
    await fake.close();
    await receiver.close();
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  const settings = () => testSettings({ models: readSettings({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.url, ASP_MODEL: 'openai:test-model', ASP_MODEL_PRICE: '1,2' }).models });
  const repo = () => repoWith({ 'client.mjs': CLIENT });

  it('answers an OpenAI client in the sandbox, plain and streaming, and records generations; the key stays on the host', async () => {
    // The plain answer reports cached prompt tokens, as OpenAI does; the streamed one (which the provider answers
    // whole: the gateway never streams from it) does not.
    script = (request) => {
      const messages = request.body.messages as Array<{ content: string }>;
      const content = messages[messages.length - 1]?.content ?? '';
      return content === 'stream me' ? undefined : { content: `echo: ${content}`, usage: { prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 4 } } };
    };
    const first = fake.requests.length;
    const { result, output } = await run(testSettings({ models: settings().models, langfuse: receiver.target }), {
      repo: repo(),
      steps: [
        { name: 'ask', run: 'CLIENT_AGENT=cli_agent node client.mjs 1' },
        // Everything the sandbox can see: its environment, every process's, the workspace and /tmp. The key is
        // searched for in two halves, so this command (in .asp/task.json) does not hold it itself.
        {
          name: 'look',
          run: `env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; A=${KEY.slice(0, 14)}; B=${KEY.slice(14)}; if grep -rqs "$A$B" /workspace /tmp /proc/1/environ /proc/self/environ; then echo FOUND-KEY; fi; echo looked`,
        },
      ],
    });
    expect(result.status).toBe('passed');
    expect(output).toContain('plain: 200 echo: hello 0');
    expect(output).toContain('streamed: 200 echo: stream me');
    expect(output).toContain('OPENAI_BASE_URL=http://127.0.0.1:4141/v1');
    expect(output).toContain('OPENAI_API_KEY=asp-gateway-no-key');
    expect(output).toContain('looked');
    expect(output).not.toContain('FOUND-KEY');
    expect(output).not.toContain(KEY);

    const requests = fake.requests.slice(first);
    expect(requests).toHaveLength(2);
    expect(requests[0]?.headers.authorization).toBe(`Bearer ${KEY}`);
    // The host's model wins over whatever the client asked for; the provider call itself never streams.
    expect(requests[0]?.body).toMatchObject({ model: 'test-model', stream: false });

    const document = trace(result);
    const generations = document.observations.filter((observation) => observation.type === 'GENERATION');
    expect(generations).toHaveLength(2);
    const ask = document.observations.find((observation) => observation.name === 'ask');
    const [plain, streamed] = generations;
    // Named after the agent the client named (X-Asp-Agent), its step kept; cost split, its total as before.
    expect(plain).toMatchObject({
      name: 'cli_agent',
      parentObservationId: ask?.id,
      model: 'test-model',
      modelParameters: { temperature: 0.2, max_tokens: 64 },
      usageDetails: { input: 6, input_cached_tokens: 4, output: 5, total: 15 },
      costDetails: { input: 0.000006, input_cached_tokens: 0.000004, output: 0.00001, total: 0.00002 },
    });
    expect(plain?.metadata).toMatchObject({ step: 'ask', provider: 'openai', status: 200, attempts: 1, requestedModel: 'whatever-the-cli-wants' });
    expect(plain).not.toHaveProperty('completionStartTime');
    // No agent named: the step and model, as before; no parameters set; streamed, so a completion start.
    expect(streamed).toMatchObject({
      name: 'ask:test-model',
      parentObservationId: ask?.id,
      usageDetails: { input: 10, output: 5, total: 15 },
      costDetails: { input: 0.00001, output: 0.00001, total: 0.00002 },
    });
    expect(streamed).not.toHaveProperty('modelParameters');
    const completionStart = Date.parse(streamed?.completionStartTime ?? '');
    expect(completionStart).toBeGreaterThanOrEqual(Date.parse(streamed?.startTime ?? ''));
    expect(completionStart).toBeLessThanOrEqual(Date.parse(streamed?.endTime ?? ''));
    expect(result.models).toMatchObject({ provider: 'openai', model: 'test-model', calls: 2, tokens: 30, costUsd: 0.00004 });
    expect(document.scores.find((score) => score.name === 'probe_cost_usd')?.value).toBe(0.00004);

    // What Langfuse receives: the same, under its attribute names.
    expect(result.traceDelivery).toBe('exported');
    const sent = (name: string) => {
      const span = receiver.spans.find((candidate) => candidate.traceId === result.traceId && candidate.name === name);
      if (!span) throw new Error(`no span ${name} arrived`);
      return receivedGeneration(span);
    };
    expect(sent('cli_agent')).toEqual({ model: 'test-model', modelParameters: plain?.modelParameters, usageDetails: plain?.usageDetails, costDetails: plain?.costDetails });
    expect(sent('ask:test-model')).toEqual({ model: 'test-model', completionStartTime: streamed?.completionStartTime, usageDetails: streamed?.usageDetails, costDetails: streamed?.costDetails });

    for (const file of ['trace.json', 'events.jsonl', 'result.json', 'task.json', 'ask.json', 'look.json']) {
      expect(readFileSync(path.join(result.workspacePath, '.asp', file), 'utf8')).not.toContain(KEY);
    }
  });

  it('retries a 429 and a 500 with backoff and then answers', async () => {
    const first = fake.requests.length;
    script = (_request, index) => (index === first ? { status: 429, headers: { 'retry-after': '0' } } : index === first + 1 ? { status: 500 } : undefined);
    const { result, output } = await run(settings(), { repo: repo(), steps: [{ name: 'ask', run: 'node client.mjs 1' }] }, { gateway: { retry: { baseDelayMs: 10 } } });
    expect(result.status).toBe('passed');
    expect(output).toContain('plain: 200 echo: hello 0');
    expect(fake.requests.length - first).toBe(4);
    const generation = trace(result).observations.find((observation) => observation.type === 'GENERATION');
    expect(generation?.metadata).toMatchObject({ attempts: 3, status: 200 });
    expect(result.warnings.some((warning) => warning.includes('provider answered 429'))).toBe(true);
  });

  it('passes a slow provider through, and its latency into the generation', async () => {
    script = () => ({ content: 'slow but sure', delayMs: 600 });
    const { result, output } = await run(settings(), { repo: repo(), steps: [{ name: 'ask', run: 'node client.mjs 1' }] });
    expect(result.status).toBe('passed');
    expect(output).toContain('plain: 200 slow but sure');
    const generation = trace(result).observations.find((observation) => observation.type === 'GENERATION');
    expect(Number(generation?.metadata.latencyMs)).toBeGreaterThanOrEqual(550);
  });

  it('stops the task with a clear status when the token budget is spent', async () => {
    script = () => undefined;
    const { result } = await run(settings(), { repo: repo(), budget: { maxTokens: 20 }, steps: [{ name: 'ask', run: 'node client.mjs 5; sleep 30' }] });
    expect(result.status).toBe('failed');
    expect(result.exitCode).toBe(1);
    expect(result.error).toMatch(/model budget exceeded: 30 tokens used, --max-tokens is 20/);
    expect(result.models?.budgetExceeded).toMatch(/model budget exceeded/);
    expect(result.steps[0]).toMatchObject({ name: 'ask', status: 'failed' });
    expect(result.durationMs).toBeLessThan(25_000);
  });
});
