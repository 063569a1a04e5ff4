import type { ModelSettings } from '../config/settings.js';
import type { Clock } from '../core/clock.js';
import { AnthropicProvider } from './anthropic-provider.js';
import { CassetteProvider, readCassette, RecordingProvider } from './cassette.js';
import { ModelBudget, type BudgetLimits } from './model-budget.js';
import type { ModelChoice } from './model-choice.js';
import { ModelGateway, type GatewayDeps } from './model-gateway.js';
import { OpenAiProvider } from './openai-provider.js';
import { priceOf } from './price-table.js';
import type { FetchLike, ModelProvider } from './provider.js';
import { DEFAULT_RETRY, type RetryPolicy } from './retry.js';

/**
 * Builds the gateway for one task. Loaded with a dynamic import only when a model is configured, so `asp run`
 * without one never loads a provider module.
 */
export async function createGateway(
  choice: ModelChoice,
  settings: ModelSettings,
  options: Pick<GatewayDeps, 'clock' | 'mask' | 'onGeneration' | 'onWarning'> & { budget: BudgetLimits; fetch?: FetchLike; retry?: Partial<RetryPolicy> },
): Promise<{ gateway: ModelGateway; budget: ModelBudget; provider: ModelProvider }> {
  const provider = await makeProvider(choice, settings, options.clock, options.fetch ?? globalThis.fetch);
  const budget = new ModelBudget(options.budget);
  const gateway = new ModelGateway({
    provider,
    budget,
    price: settings.price ?? priceOf(provider.model),
    clock: options.clock,
    retry: { ...DEFAULT_RETRY, sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)), ...options.retry },
    mask: options.mask,
    onGeneration: options.onGeneration,
    onWarning: options.onWarning,
  });
  return { gateway, budget, provider };
}

async function makeProvider(choice: ModelChoice, settings: ModelSettings, clock: Clock, fetch: FetchLike): Promise<ModelProvider> {
  const now = () => clock.now().getTime();
  if (choice.provider === 'cassette') return new CassetteProvider(await readCassette(choice.file), choice.file);
  const real =
    choice.provider === 'openai'
      ? new OpenAiProvider(choice.model, { apiKey: choice.apiKey, baseUrl: choice.baseUrl, fetch, now })
      : new AnthropicProvider(choice.model, { apiKey: choice.apiKey, baseUrl: choice.baseUrl, fetch, now });
  return settings.recordCassette ? new RecordingProvider(real, settings.recordCassette) : real;
}
