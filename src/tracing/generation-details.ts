import type { CostSplit, TokenUsage } from '../core/records.js';

/**
 * Langfuse's usage and cost keys for a generation. Langfuse counts every key with `input` in its name as input, so
 * `input` is the part not read from the cache and cached prompt tokens are `input_cached_tokens` (its name for
 * OpenAI's `prompt_tokens_details.cached_tokens` and Anthropic's `cache_read_input_tokens`).
 */
export const CACHED_INPUT_KEY = 'input_cached_tokens';

/** A generation's name: the agent that made it when it said, else its step and model (the name before agents said). */
export function generationName(step: string, model: string, agent: string | undefined): string {
  return agent ?? `${step}:${model}`;
}

export function usageDetailsOf(usage: TokenUsage): Record<string, number> {
  const cached = Math.min(usage.cachedInput ?? 0, usage.input);
  return { input: usage.input - cached, ...(cached > 0 ? { [CACHED_INPUT_KEY]: cached } : {}), output: usage.output, total: usage.total };
}

/** The split under the same keys; `total` alone when only a total is known. */
export function costDetailsOf(cost: CostSplit | undefined, totalUsd: number | undefined): Record<string, number> | undefined {
  if (cost) return { input: cost.input, ...(cost.cachedInput !== undefined ? { [CACHED_INPUT_KEY]: cost.cachedInput } : {}), output: cost.output, total: cost.total };
  return totalUsd === undefined ? undefined : { total: totalUsd };
}
