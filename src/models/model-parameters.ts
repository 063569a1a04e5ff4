import { valueAt } from '../core/record-guard.js';

/** Sampling parameters of an OpenAI chat-completions request that are numbers. */
const NUMBER_PARAMETERS = ['temperature', 'top_p', 'max_tokens', 'max_completion_tokens', 'seed', 'frequency_penalty', 'presence_penalty', 'n', 'top_logprobs'] as const;
/** …and those that are words. */
const TEXT_PARAMETERS = ['reasoning_effort', 'service_tier', 'verbosity'] as const;
/** The sandbox wrote these: a value is cut to this, so a stop sequence cannot carry a prompt into the trace. */
const PARAMETER_MAX_CHARS = 200;

/**
 * The sampling parameters a request set, as Langfuse's `modelParameters` takes them (text or a number): what the
 * model was asked to do, beside what it answered. Only known keys, finite numbers and capped text; undefined when
 * the request set none.
 */
export function modelParametersOf(body: Record<string, unknown>): Record<string, string | number> | undefined {
  const parameters: Record<string, string | number> = {};
  for (const key of NUMBER_PARAMETERS) {
    const value = body[key];
    if (typeof value === 'number' && Number.isFinite(value)) parameters[key] = value;
  }
  for (const key of TEXT_PARAMETERS) {
    const value = body[key];
    if (typeof value === 'string' && value) parameters[key] = cut(value);
  }
  const stop = body.stop;
  if (typeof stop === 'string' && stop) parameters.stop = cut(stop);
  else if (Array.isArray(stop) && stop.length && stop.every((item) => typeof item === 'string')) parameters.stop = cut(JSON.stringify(stop));
  const format = valueAt(body, 'response_format', 'type');
  if (typeof format === 'string' && format) parameters.response_format = cut(format);
  return Object.keys(parameters).length ? parameters : undefined;
}

function cut(text: string): string {
  return text.length <= PARAMETER_MAX_CHARS ? text : `${text.slice(0, PARAMETER_MAX_CHARS - 1)}…`;
}
