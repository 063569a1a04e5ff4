import path from 'node:path';
import { AspError } from '../core/asp-error.js';
import type { ModelSettings } from '../config/settings.js';

/**
 * Which provider and model the host's gateway uses. Pure and import-light on purpose: `asp run` decides with it
 * whether a gateway is needed at all, and loads the provider modules only when one is.
 */
export type ModelChoice =
  | { provider: 'openai'; model: string; apiKey: string; baseUrl: string }
  | { provider: 'anthropic'; model: string; apiKey: string; baseUrl: string }
  | { provider: 'cassette'; model: string; file: string };

export const DEFAULT_OPENAI_MODEL = 'gpt-4o-mini';
export const DEFAULT_ANTHROPIC_MODEL = 'claude-3-5-haiku-latest';
const PROVIDERS = ['openai', 'anthropic', 'cassette'] as const;
type ProviderName = (typeof PROVIDERS)[number];

function isProvider(name: string): name is ProviderName {
  return PROVIDERS.some((provider) => provider === name);
}

/** Undefined when no provider is configured: then there is no gateway and no model endpoint in the sandbox. */
export function chooseModel(settings: ModelSettings, cwd: string): ModelChoice | undefined {
  const spec = settings.model;
  if (!spec) {
    if (settings.openai) return { provider: 'openai', model: DEFAULT_OPENAI_MODEL, ...settings.openai };
    if (settings.anthropic) return { provider: 'anthropic', model: DEFAULT_ANTHROPIC_MODEL, ...settings.anthropic };
    return undefined;
  }
  const colon = spec.indexOf(':');
  const provider = colon > 0 ? spec.slice(0, colon) : '';
  const rest = colon > 0 ? spec.slice(colon + 1).trim() : '';
  if (!isProvider(provider) || !rest) {
    throw new AspError('BAD_INPUT', `ASP_MODEL="${spec}" is not <provider>:<model>`, 'use e.g. ASP_MODEL=openai:gpt-4o-mini, anthropic:claude-3-5-haiku-latest or cassette:replies.json');
  }
  if (provider === 'cassette') return { provider, model: 'cassette', file: path.resolve(cwd, rest) };
  const keys = provider === 'openai' ? settings.openai : settings.anthropic;
  if (!keys) {
    const variable = provider === 'openai' ? 'OPENAI_API_KEY' : 'ANTHROPIC_API_KEY';
    throw new AspError('BAD_INPUT', `ASP_MODEL="${spec}" needs ${variable}`, `set ${variable} on the host; it never enters the sandbox`);
  }
  return { provider, model: rest, ...keys };
}

/** The host variables that hold model keys: never let into the sandbox, masked everywhere. */
export const MODEL_KEY_VARIABLES = ['OPENAI_API_KEY', 'ANTHROPIC_API_KEY'];

/** The key values of a choice and of the settings, for masking. */
export function modelSecrets(settings: ModelSettings): string[] {
  return [settings.openai?.apiKey, settings.anthropic?.apiKey].filter((value): value is string => Boolean(value));
}
