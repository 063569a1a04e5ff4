import type { HostMessage } from '../protocol/host-messages.js';
import type { ModelRequestMessage } from '../protocol/messages.js';
import type { Clock } from '../core/clock.js';
import { valueAt } from '../core/record-guard.js';
import type { GatewayGeneration } from '../core/records.js';
import type { ModelBudget } from './model-budget.js';
import { modelParametersOf } from './model-parameters.js';
import { costSplitOf, type Price } from './price-table.js';
import { errorReply, usageOf, type ChatReply, type ModelProvider } from './provider.js';
import { withRetries, type RetryPolicy } from './retry.js';

/** One model call as the trace records it (a GENERATION observation): the recorder's own shape. */
export type GenerationRecord = GatewayGeneration;

export interface GatewayDeps {
  provider: ModelProvider;
  budget: ModelBudget;
  price: Price | undefined;
  clock: Clock;
  retry: RetryPolicy;
  /** Masks secrets (the provider keys) in text: provider errors have been known to echo a key back. */
  mask: (text: string) => string;
  onGeneration: (generation: GenerationRecord) => void;
  onWarning: (message: string) => void;
}

/**
 * The host side of the sandbox's model endpoint: takes `model.request`s, calls the provider with the host's key
 * (retrying rate limits and server errors), keeps the budget, records a generation per call, answers on stdin.
 */
export class ModelGateway {
  /** Resolves with the reason once the budget is spent: the session then stops the task. */
  readonly stopped: Promise<string>;
  private stop!: (reason: string) => void;
  private stopReason: string | undefined;

  constructor(private readonly deps: GatewayDeps) {
    this.stopped = new Promise((resolve) => (this.stop = resolve));
  }

  get budgetExceeded(): string | undefined {
    return this.stopReason;
  }

  /** Never throws: whatever happens, the sandbox gets an answer. */
  async handle(request: ModelRequestMessage, reply: (message: HostMessage) => void): Promise<void> {
    const { deps } = this;
    const over = deps.budget.exceeded();
    if (over) {
      this.halt(over);
      reply({ type: 'model.response', id: request.id, status: 402, body: errorReply(402, `asp: ${over}`, 'budget_exceeded').body });
      return;
    }
    const streaming = request.body.stream === true;
    const { stream: _stream, stream_options: _options, ...rest } = request.body;
    const body: Record<string, unknown> = { ...rest, model: deps.provider.model };
    const startTime = deps.clock.now();
    let outcome: { reply: ChatReply; attempts: number };
    try {
      outcome = await withRetries(
        () => deps.provider.chat({ body, step: request.step }),
        deps.retry,
        (failed, attempt, delayMs) => deps.onWarning(`model call ${request.id} of step ${request.step}: provider answered ${failed.status}, retry ${attempt} in ${delayMs} ms`),
      );
    } catch (error) {
      outcome = { reply: errorReply(502, `asp gateway: ${error instanceof Error ? error.message : String(error)}`), attempts: 1 };
    }
    // Providers answer whole (the gateway never streams from them), so the first chunk reaches the host with the answer.
    const answeredAt = deps.clock.now();
    const status = outcome.reply.status;
    const answer = this.masked(outcome.reply.body);
    const usage = status < 400 ? usageOf(answer) : { input: 0, output: 0, total: 0 };
    const cost = status < 400 ? costSplitOf(deps.price, usage) : undefined;
    deps.budget.add(usage, cost?.total);
    const parameters = modelParametersOf(request.body);
    deps.onGeneration({
      step: request.step,
      ...(request.agent ? { agent: request.agent } : {}),
      model: modelOf(answer) ?? deps.provider.model,
      provider: deps.provider.name,
      startTime,
      endTime: deps.clock.now(),
      ...(streaming && status === 200 ? { completionStartTime: answeredAt } : {}),
      usage,
      costUsd: cost?.total,
      ...(cost ? { cost } : {}),
      ...(parameters ? { modelParameters: this.maskedParameters(parameters) } : {}),
      status,
      attempts: outcome.attempts,
      input: this.masked(body.messages ?? body),
      output: status < 400 ? (contentOf(answer) ?? answer) : answer,
      requestedModel: typeof request.body.model === 'string' ? request.body.model : undefined,
    });
    if (streaming && status === 200) {
      for (const chunk of toChunks(answer)) reply({ type: 'model.chunk', id: request.id, data: chunk });
      reply({ type: 'model.response', id: request.id, status, body: null });
    } else reply({ type: 'model.response', id: request.id, status, body: answer });
    const after = deps.budget.exceeded();
    if (after) this.halt(after);
  }

  private halt(reason: string): void {
    if (this.stopReason) return;
    this.stopReason = reason;
    this.stop(reason);
  }

  /** Masked like the prompt: all the trace keeps of a request goes through the masker. */
  private maskedParameters(parameters: Record<string, string | number>): Record<string, string | number> {
    return Object.fromEntries(Object.entries(parameters).map(([key, value]) => [key, typeof value === 'string' ? this.deps.mask(value) : value]));
  }

  private masked(value: unknown): unknown {
    const text = JSON.stringify(value ?? null);
    const masked = this.deps.mask(text);
    return masked === text ? value : JSON.parse(masked);
  }
}

function modelOf(body: unknown): string | undefined {
  const model = valueAt(body, 'model');
  return typeof model === 'string' && model ? model.slice(0, 200) : undefined;
}

function contentOf(body: unknown): string | undefined {
  const content = valueAt(body, 'choices', 0, 'message', 'content');
  return typeof content === 'string' ? content : undefined;
}

/** A complete `chat.completion` as the two `chat.completion.chunk`s a streaming client expects (content, then finish). */
export function toChunks(body: unknown): unknown[] {
  const completion = (body ?? {}) as { id?: string; created?: number; model?: string; choices?: Array<{ message?: { role?: string; content?: unknown }; finish_reason?: string }>; usage?: unknown };
  const choice = completion.choices?.[0];
  const base = { id: completion.id ?? 'asp', object: 'chat.completion.chunk', created: completion.created ?? 0, model: completion.model ?? '' };
  return [
    { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: typeof choice?.message?.content === 'string' ? choice.message.content : '' }, finish_reason: null }] },
    { ...base, choices: [{ index: 0, delta: {}, finish_reason: choice?.finish_reason ?? 'stop' }], ...(completion.usage ? { usage: completion.usage } : {}) },
  ];
}
