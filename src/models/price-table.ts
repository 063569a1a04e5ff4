import type { CostSplit, TokenUsage } from '../core/records.js';

/**
 * What a model costs, in USD per million tokens (list prices of the providers; check them when they change).
 * The longest matching prefix wins, so dated snapshots (gpt-4o-mini-2024-07-18) find their family.
 */
export interface Price {
  input: number;
  output: number;
}

export const PRICE_TABLE: Readonly<Record<string, Price>> = {
  'gpt-4o': { input: 2.5, output: 10 },
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  'gpt-4.1': { input: 2, output: 8 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4 },
  'gpt-5': { input: 1.25, output: 10 },
  'gpt-5-mini': { input: 0.25, output: 2 },
  'gpt-5-nano': { input: 0.05, output: 0.4 },
  'o3-mini': { input: 1.1, output: 4.4 },
  'o4-mini': { input: 1.1, output: 4.4 },
  'claude-3-haiku': { input: 0.25, output: 1.25 },
  'claude-3-5-haiku': { input: 0.8, output: 4 },
  'claude-haiku-4': { input: 1, output: 5 },
  'claude-3-5-sonnet': { input: 3, output: 15 },
  'claude-3-7-sonnet': { input: 3, output: 15 },
  'claude-sonnet-4': { input: 3, output: 15 },
  'claude-opus-4': { input: 15, output: 75 },
};

export function priceOf(model: string, table: Readonly<Record<string, Price>> = PRICE_TABLE): Price | undefined {
  const name = model.toLowerCase().replace(/^(openai|anthropic)[:/]/, '');
  let best: string | undefined;
  for (const prefix of Object.keys(table)) {
    if (name.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix;
  }
  return best === undefined ? undefined : table[best];
}

/** Cost of one call in USD, or undefined when the model has no price (then budgets count tokens only). */
export function costOf(price: Price | undefined, usage: { input: number; output: number }): number | undefined {
  if (!price) return undefined;
  return usd((usage.input * price.input + usage.output * price.output) / 1e6);
}

/**
 * The cost of one call by kind of token, `total` exactly costOf's (budgets and probe_cost_usd count it). Cached input
 * is priced as input: the table has no cache price, and a cheaper one would change the total. Each part is rounded
 * on its own, so the parts can miss the total by a rounding step; `total` is the authority.
 */
export function costSplitOf(price: Price | undefined, usage: TokenUsage): CostSplit | undefined {
  const total = costOf(price, usage);
  if (!price || total === undefined) return undefined;
  const cached = Math.min(usage.cachedInput ?? 0, usage.input);
  return {
    input: usd(((usage.input - cached) * price.input) / 1e6),
    ...(cached > 0 ? { cachedInput: usd((cached * price.input) / 1e6) } : {}),
    output: usd((usage.output * price.output) / 1e6),
    total,
  };
}

/** USD to 1e-8, the precision of every cost asp records. */
function usd(value: number): number {
  return Math.round(value * 1e8) / 1e8;
}
