import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSettings } from '../../src/config/settings.js';
import type { Clock } from '../../src/core/clock.js';
import { toAnthropic, toOpenAi } from '../../src/models/anthropic-provider.js';
import { CassetteProvider, readCassette, RecordingProvider, requestKey, type Cassette } from '../../src/models/cassette.js';
import { ModelBudget } from '../../src/models/model-budget.js';
import { chooseModel } from '../../src/models/model-choice.js';
import { ModelGateway, type GenerationRecord } from '../../src/models/model-gateway.js';
import { modelParametersOf } from '../../src/models/model-parameters.js';
import { OpenAiProvider } from '../../src/models/openai-provider.js';
import { costOf, costSplitOf, priceOf } from '../../src/models/price-table.js';
import { usageOf, type FetchLike, type ModelProvider } from '../../src/models/provider.js';
import { withRetries } from '../../src/models/retry.js';
import type { HostMessage } from '../../src/protocol/host-messages.js';
import { SecretMasker } from '../../src/protocol/secret-masker.js';
import { startFakeOpenAi, type FakeOpenAi } from '../helpers/fake-openai.js';

const clock = { now: () => new Date('2026-01-01T00:00:00Z'), monotonicMs: () => 0 };
const noSleep = { attempts: 4, baseDelayMs: 100, maxDelayMs: 1000, sleep: async () => {} };

describe('model choice', () => {
  const models = (env: Record<string, string>) => readSettings(env).models;

  it('is off when no provider is configured', () => {
    expect(chooseModel(models({}), '/')).toBeUndefined();
  });

  it('takes OpenAI (with its base URL) or Anthropic from their keys, and ASP_MODEL over both', () => {
    expect(chooseModel(models({ OPENAI_API_KEY: 'k', OPENAI_BASE_URL: 'http://x/v1/' }), '/')).toMatchObject({ provider: 'openai', model: 'gpt-4o-mini', baseUrl: 'http://x/v1' });
    expect(chooseModel(models({ ANTHROPIC_API_KEY: 'a' }), '/')).toMatchObject({ provider: 'anthropic' });
    expect(chooseModel(models({ ANTHROPIC_API_KEY: 'a', ASP_MODEL: 'anthropic:claude-sonnet-4-0' }), '/')).toMatchObject({ model: 'claude-sonnet-4-0' });
    expect(chooseModel(models({ ASP_MODEL: 'cassette:replies.json' }), '/work')).toEqual({ provider: 'cassette', model: 'cassette', file: '/work/replies.json' });
  });

  it('says what is missing', () => {
    expect(() => chooseModel(models({ ASP_MODEL: 'openai:gpt-4o' }), '/')).toThrow(/needs OPENAI_API_KEY/);
    expect(() => chooseModel(models({ ASP_MODEL: 'gpt-4o' }), '/')).toThrow(/not <provider>:<model>/);
    expect(() => readSettings({ ASP_MODEL_PRICE: 'cheap' })).toThrow(/ASP_MODEL_PRICE/);
  });
});

describe('price table', () => {
  it('finds the longest matching prefix, so snapshots and minis get their own price', () => {
    expect(priceOf('gpt-4o-mini-2024-07-18')).toEqual({ input: 0.15, output: 0.6 });
    expect(priceOf('gpt-4o-2024-08-06')).toEqual({ input: 2.5, output: 10 });
    expect(priceOf('openai:gpt-4.1-nano')).toEqual({ input: 0.1, output: 0.4 });
    expect(priceOf('claude-3-5-haiku-latest')).toEqual({ input: 0.8, output: 4 });
    expect(priceOf('my-local-llama')).toBeUndefined();
  });

  it('costs a call in USD per million tokens', () => {
    expect(costOf({ input: 2.5, output: 10 }, { input: 1000, output: 500 })).toBeCloseTo(0.0075, 10);
    expect(costOf(undefined, { input: 1000, output: 500 })).toBeUndefined();
  });

  it('splits a cost into input, cached input and output, the total exactly the unsplit cost', () => {
    const price = { input: 2.5, output: 10 };
    const cached = { input: 1000, output: 500, total: 1500, cachedInput: 400 };
    expect(costSplitOf(price, cached)).toEqual({ input: 0.0015, cachedInput: 0.001, output: 0.005, total: 0.0075 });
    expect(costSplitOf(price, cached)?.total).toBe(costOf(price, cached));
    expect(costSplitOf(price, { input: 1000, output: 500, total: 1500 })).toEqual({ input: 0.0025, output: 0.005, total: 0.0075 });
    // Odd token counts: the total is still costOf's, to the last digit, whatever the parts round to.
    const odd = { input: 333_333, output: 77_777, total: 411_110, cachedInput: 111_111 };
    expect(costSplitOf(priceOf('gpt-4o-mini'), odd)?.total).toBe(costOf(priceOf('gpt-4o-mini'), odd));
    expect(costSplitOf(undefined, cached)).toBeUndefined();
  });
});

describe('token usage', () => {
  it("takes OpenAI's cached prompt tokens as a part of the input, never more than it", () => {
    expect(usageOf({ usage: { prompt_tokens: 1000, completion_tokens: 10, total_tokens: 1010, prompt_tokens_details: { cached_tokens: 800 } } })).toEqual({
      input: 1000,
      output: 10,
      total: 1010,
      cachedInput: 800,
    });
    expect(usageOf({ usage: { prompt_tokens: 5, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 50 } } })).toEqual({ input: 5, output: 1, total: 6, cachedInput: 5 });
    expect(usageOf({ usage: { prompt_tokens: 5, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 0 } } })).toEqual({ input: 5, output: 1, total: 6 });
  });

  it("maps Anthropic's cache reads to OpenAI's cached_tokens, inside prompt_tokens as OpenAI counts them", () => {
    const reply = toOpenAi({ content: [], usage: { input_tokens: 7, cache_read_input_tokens: 700, cache_creation_input_tokens: 100, output_tokens: 3 } }, 'claude-x', 0);
    expect(reply.usage).toEqual({ prompt_tokens: 807, completion_tokens: 3, total_tokens: 810, prompt_tokens_details: { cached_tokens: 700 } });
    expect(usageOf(reply)).toEqual({ input: 807, output: 3, total: 810, cachedInput: 700 });
  });
});

describe('model parameters', () => {
  it('keeps the sampling parameters a request set: known keys, finite numbers, capped text', () => {
    expect(
      modelParametersOf({
        messages: [{ role: 'user', content: 'q' }],
        temperature: 0.2,
        top_p: '0.9',
        max_completion_tokens: 256,
        seed: 7,
        frequency_penalty: 0.5,
        presence_penalty: -0.5,
        stop: ['END', '###'],
        response_format: { type: 'json_schema', json_schema: { name: 'plan', schema: {} } },
        reasoning_effort: 'low',
        logit_bias: { 50256: -100 },
        user: 'someone',
      }),
    ).toEqual({
      temperature: 0.2,
      max_completion_tokens: 256,
      seed: 7,
      frequency_penalty: 0.5,
      presence_penalty: -0.5,
      stop: '["END","###"]',
      response_format: 'json_schema',
      reasoning_effort: 'low',
    });
    expect(modelParametersOf({ stop: 'x'.repeat(500) })?.stop).toHaveLength(200);
    expect(modelParametersOf({ messages: [], stream: true, model: 'gpt-4o' })).toBeUndefined();
  });
});

describe('model budget', () => {
  it('is spent at the token limit or the cost limit, and says which', () => {
    const tokens = new ModelBudget({ maxTokens: 100 });
    tokens.add({ total: 60 }, undefined);
    expect(tokens.exceeded()).toBeUndefined();
    tokens.add({ total: 40 }, undefined);
    expect(tokens.exceeded()).toBe('model budget exceeded: 100 tokens used, --max-tokens is 100');
    const cost = new ModelBudget({ maxCostUsd: 0.01 });
    cost.add({ total: 1 }, 0.011);
    expect(cost.exceeded()).toMatch(/\$0\.011000 spent, --max-cost is \$0\.01/);
    expect(new ModelBudget({}).exceeded()).toBeUndefined();
  });
});

describe('retries', () => {
  it('retries 429 and 5xx with growing delays, honouring Retry-After', async () => {
    const statuses = [429, 503, 200];
    const delays: number[] = [];
    const { reply, attempts } = await withRetries(async () => ({ status: statuses.shift() ?? 200, body: {}, retryAfterMs: statuses.length === 2 ? 250 : undefined }), {
      ...noSleep,
      random: () => 1,
      sleep: async (ms) => void delays.push(ms),
    });
    expect([reply.status, attempts]).toEqual([200, 3]);
    expect(delays).toEqual([250, 200]);
  });

  it('does not retry a 400, and gives up after the last attempt', async () => {
    let calls = 0;
    expect((await withRetries(async () => ((calls += 1), { status: 400, body: {} }), noSleep)).attempts).toBe(1);
    expect(calls).toBe(1);
    const down = await withRetries(async () => {
      throw new Error('ECONNREFUSED');
    }, noSleep);
    expect(down).toMatchObject({ attempts: 4, reply: { status: 502 } });
  });
});

describe('providers against a local OpenAI-compatible server', () => {
  let fake: FakeOpenAi;
  beforeAll(async () => {
    fake = await startFakeOpenAi();
  });
  afterAll(() => fake.close());

  it('calls chat/completions with the key, the chosen model and no streaming', async () => {
    const provider = new OpenAiProvider('test-model', { apiKey: 'sk-1', baseUrl: fake.url, fetch: globalThis.fetch as unknown as FetchLike, now: () => 0 });
    const reply = await provider.chat({ step: 's', body: { model: 'other', stream: true, messages: [{ role: 'user', content: 'hi' }] } });
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({ choices: [{ message: { content: 'echo: hi' } }], usage: { total_tokens: 15 } });
    expect(fake.requests.at(-1)?.headers.authorization).toBe('Bearer sk-1');
    expect(fake.requests.at(-1)?.body).toMatchObject({ model: 'test-model', stream: false });
  });

  it('translates to and from the Anthropic Messages API', () => {
    const request = toAnthropic(
      {
        max_tokens: 50,
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: [{ type: 'text', text: 'hi' }] },
        ],
      },
      'claude-x',
    );
    expect(request).toEqual({ model: 'claude-x', max_tokens: 50, system: 'be brief', messages: [{ role: 'user', content: 'hi' }] });
    const reply = toOpenAi({ id: 'msg_1', content: [{ type: 'text', text: 'hello' }], stop_reason: 'end_turn', usage: { input_tokens: 7, output_tokens: 3 } }, 'claude-x', 0);
    expect(reply).toMatchObject({ object: 'chat.completion', choices: [{ message: { content: 'hello' } }], usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } });
  });
});

describe('cassettes', () => {
  const reply = (content: string) => ({ status: 200, body: { model: 'gpt-4o-mini', choices: [{ message: { role: 'assistant', content } }], usage: { prompt_tokens: 1, completion_tokens: 1 } } });
  const messages = (content: string) => ({ messages: [{ role: 'user', content }] });
  const cassette: Cassette = {
    version: 1,
    model: 'gpt-4o-mini',
    interactions: [
      { step: 'plan', key: requestKey(messages('exact')), response: reply('by key') },
      { step: 'plan', key: 'other', response: reply('by step') },
    ],
  };

  it('replays by request first, then the next reply of the same step, then says it is exhausted', async () => {
    const provider = new CassetteProvider(cassette, 'c.json');
    expect((await provider.chat({ step: 'plan', body: messages('exact') })).body).toMatchObject({ choices: [{ message: { content: 'by key' } }] });
    expect((await provider.chat({ step: 'plan', body: messages('new') })).body).toMatchObject({ choices: [{ message: { content: 'by step' } }] });
    const exhausted = await provider.chat({ step: 'plan', body: messages('new') });
    expect(exhausted.status).toBe(404);
    expect(JSON.stringify(exhausted.body)).toContain('no reply left for step');
  });

  it('records a real provider into a cassette that replays offline', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-cassette-')), 'c.json');
    let answers = 0;
    const real: ModelProvider = { name: 'openai', model: 'gpt-4o-mini', chat: async () => ((answers += 1), reply(`answer ${answers}`)) };
    const recorder = new RecordingProvider(real, file);
    await recorder.chat({ step: 'a', body: messages('one') });
    await recorder.chat({ step: 'b', body: messages('two') });
    await recorder.close();
    const replay = new CassetteProvider(await readCassette(file), file);
    expect((await replay.chat({ step: 'b', body: messages('two') })).body).toMatchObject({ choices: [{ message: { content: 'answer 2' } }] });
    await expect(readCassette(path.join(path.dirname(file), 'missing.json'))).rejects.toThrow(/cannot read cassette/);
  });
});

describe('model gateway', () => {
  const provider = (status = 200, content = 'hi'): ModelProvider => ({
    name: 'openai',
    model: 'gpt-4o-mini',
    chat: async () =>
      status === 200
        ? {
            status,
            body: {
              id: 'x',
              model: 'gpt-4o-mini',
              choices: [{ message: { role: 'assistant', content }, finish_reason: 'stop' }],
              usage: { prompt_tokens: 1000, completion_tokens: 1000, total_tokens: 2000 },
            },
          }
        : { status, body: { error: { message: 'Incorrect API key provided: sk-secret-123' } } },
  });
  const gateway = (chat: ModelProvider, budget = new ModelBudget({}), generations: GenerationRecord[] = [], time: Clock = clock) =>
    new ModelGateway({
      provider: chat,
      budget,
      price: priceOf('gpt-4o-mini'),
      clock: time,
      retry: noSleep,
      mask: (text) => new SecretMasker(['sk-secret-123']).mask(text),
      onGeneration: (g) => generations.push(g),
      onWarning: () => {},
    });
  const request = (body: Record<string, unknown>) => ({ type: 'model.request' as const, id: 'm1', step: 'plan', body: { messages: [{ role: 'user', content: 'q' }], ...body } });

  it('answers, prices the call and records it', async () => {
    const generations: GenerationRecord[] = [];
    const replies: HostMessage[] = [];
    await gateway(provider(), new ModelBudget({}), generations).handle(request({}), (message) => replies.push(message));
    expect(replies).toEqual([expect.objectContaining({ type: 'model.response', id: 'm1', status: 200 })]);
    expect(generations[0]).toMatchObject({ step: 'plan', model: 'gpt-4o-mini', usage: { input: 1000, output: 1000, total: 2000 }, costUsd: 0.00075, output: 'hi' });
    expect(generations[0]?.cost).toEqual({ input: 0.00015, output: 0.0006, total: 0.00075 });
    // Nothing asked for: no agent, no parameters, no completion start (the answer was not streamed).
    expect(generations[0]).not.toHaveProperty('agent');
    expect(generations[0]).not.toHaveProperty('modelParameters');
    expect(generations[0]).not.toHaveProperty('completionStartTime');
  });

  it('names the call after the agent that asked, keeps its step, and records the parameters the request set', async () => {
    const generations: GenerationRecord[] = [];
    await gateway(provider(), new ModelBudget({}), generations).handle(
      { ...request({ temperature: 0.2, max_tokens: 64, stop: 'sk-secret-123', response_format: { type: 'json_object' } }), step: 'design_review_agent', agent: 'design_agent' },
      () => {},
    );
    expect(generations[0]).toMatchObject({ step: 'design_review_agent', agent: 'design_agent', modelParameters: { temperature: 0.2, max_tokens: 64, response_format: 'json_object' } });
    // Masked like the prompt.
    expect(JSON.stringify(generations)).not.toContain('sk-secret-123');
  });

  it("records when a streamed answer's first chunk reached the host, between the call's start and end", async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const ticking = { now: () => new Date((now += 250)), monotonicMs: () => now };
    const generations: GenerationRecord[] = [];
    const replies: HostMessage[] = [];
    await gateway(provider(200, 'streamed'), new ModelBudget({}), generations, ticking).handle(request({ stream: true }), (message) => replies.push(message));
    const [generation] = generations;
    const first = generation?.completionStartTime?.getTime() ?? NaN;
    expect(first).toBeGreaterThan(generation?.startTime.getTime() ?? Infinity);
    expect(first).toBeLessThan(generation?.endTime.getTime() ?? -Infinity);
    expect(replies[0]?.type).toBe('model.chunk');
  });

  it('splits the cost of a call with cached prompt tokens, its total what the budget counts', async () => {
    const cachedReply: ModelProvider = {
      name: 'openai',
      model: 'gpt-4o-mini',
      chat: async () => ({
        status: 200,
        body: {
          model: 'gpt-4o-mini',
          choices: [{ message: { role: 'assistant', content: 'hi' } }],
          usage: { prompt_tokens: 1000, completion_tokens: 1000, total_tokens: 2000, prompt_tokens_details: { cached_tokens: 600 } },
        },
      }),
    };
    const budget = new ModelBudget({});
    const generations: GenerationRecord[] = [];
    await gateway(cachedReply, budget, generations).handle(request({}), () => {});
    expect(generations[0]).toMatchObject({ usage: { input: 1000, cachedInput: 600, output: 1000, total: 2000 }, costUsd: 0.00075 });
    expect(generations[0]?.cost).toEqual({ input: 0.00006, cachedInput: 0.00009, output: 0.0006, total: 0.00075 });
    expect(budget.costUsd).toBe(0.00075);
  });

  it('streams a reply as chunks, then closes it', async () => {
    const replies: HostMessage[] = [];
    await gateway(provider(200, 'streamed')).handle(request({ stream: true }), (message) => replies.push(message));
    expect(replies.map((message) => message.type)).toEqual(['model.chunk', 'model.chunk', 'model.response']);
    expect(replies[0]).toMatchObject({ data: { object: 'chat.completion.chunk', choices: [{ delta: { content: 'streamed' } }] } });
  });

  it('masks a key a provider echoes back', async () => {
    const replies: HostMessage[] = [];
    const generations: GenerationRecord[] = [];
    await gateway(provider(401), new ModelBudget({}), generations).handle(request({}), (message) => replies.push(message));
    expect(JSON.stringify(replies)).not.toContain('sk-secret-123');
    expect(JSON.stringify(generations)).not.toContain('sk-secret-123');
  });

  it('refuses calls once the budget is spent, and asks for the task to stop', async () => {
    const budget = new ModelBudget({ maxTokens: 2000 });
    const subject = gateway(provider(), budget);
    const replies: HostMessage[] = [];
    await subject.handle(request({}), (message) => replies.push(message));
    await subject.handle(request({}), (message) => replies.push(message));
    expect(replies.map((message) => (message.type === 'model.response' ? message.status : 0))).toEqual([200, 402]);
    await expect(subject.stopped).resolves.toMatch(/model budget exceeded/);
    expect(budget.calls).toBe(1);
  });
});
