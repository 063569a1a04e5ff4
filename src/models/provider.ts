import { valueAt } from '../core/record-guard.js';
import type { TokenUsage } from '../core/records.js';

/** A model provider behind the host's gateway: takes an OpenAI chat-completions body, answers in the same shape. */
export interface ChatCall {
  /** An OpenAI chat-completions request body, `model` already set by the gateway, `stream` removed. */
  body: Record<string, unknown>;
  /** The sandbox step that asked (cassettes match on it). */
  step: string;
  signal?: AbortSignal | undefined;
}

export interface ChatReply {
  /** HTTP status; 200 with an OpenAI `chat.completion` body, or an error status with an OpenAI-shaped error body. */
  status: number;
  body: unknown;
  /** From a Retry-After header, when the provider sent one. */
  retryAfterMs?: number | undefined;
}

export interface ModelProvider {
  /** `openai`, `anthropic` or `cassette`. */
  readonly name: string;
  readonly model: string;
  chat(call: ChatCall): Promise<ChatReply>;
  /** Saves what needs saving (a recording cassette); idempotent. */
  close?(): Promise<void>;
}

export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body: string; signal?: AbortSignal | undefined },
) => Promise<{
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}>;

/**
 * Token usage of an OpenAI `chat.completion` (or chunk) body; zeros when it does not say. OpenAI counts cached
 * prompt tokens inside `prompt_tokens` (`prompt_tokens_details.cached_tokens`), so they are a part of `input`, never
 * more than it: a provider that says otherwise cannot make the input negative.
 */
export function usageOf(body: unknown): TokenUsage {
  const usage = valueAt(body, 'usage');
  const input = numberOr0(valueAt(usage, 'prompt_tokens'));
  const output = numberOr0(valueAt(usage, 'completion_tokens'));
  const cached = Math.min(input, numberOr0(valueAt(usage, 'prompt_tokens_details', 'cached_tokens')));
  return { input, output, total: numberOr0(valueAt(usage, 'total_tokens')) || input + output, ...(cached > 0 ? { cachedInput: cached } : {}) };
}

export function errorReply(status: number, message: string, type = 'asp_gateway_error'): ChatReply {
  return { status, body: { error: { message, type } } };
}

export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { error: { message: text.slice(0, 500), type: 'invalid_json' } };
  }
}

function numberOr0(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0;
}
