import { isRecord, valueAt } from '../core/record-guard.js';
import { parseJson, parseRetryAfter, type ChatCall, type ChatReply, type FetchLike, type ModelProvider } from './provider.js';

const ANTHROPIC_VERSION = '2023-06-01';
const DEFAULT_MAX_TOKENS = 4096;

/**
 * Anthropic's Messages API behind the OpenAI shape the sandbox speaks: system messages move to `system`, the
 * reply becomes a `chat.completion` with OpenAI's usage names, so the gateway and the trace see one format.
 */
export class AnthropicProvider implements ModelProvider {
  readonly name = 'anthropic';

  constructor(
    readonly model: string,
    private readonly options: { apiKey: string; baseUrl: string; fetch: FetchLike; now: () => number },
  ) {}

  async chat(call: ChatCall): Promise<ChatReply> {
    const response = await this.options.fetch(`${this.options.baseUrl}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': this.options.apiKey, 'anthropic-version': ANTHROPIC_VERSION },
      body: JSON.stringify(toAnthropic(call.body, this.model)),
      signal: call.signal,
    });
    const body = parseJson(await response.text());
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), this.options.now());
    if (response.status !== 200) return { status: response.status, body: toOpenAiError(body), retryAfterMs };
    return { status: 200, body: toOpenAi(body, this.model, this.options.now()), retryAfterMs };
  }
}

export function toAnthropic(body: Record<string, unknown>, model: string): Record<string, unknown> {
  // The sandbox wrote this body: a message that is not an object is dropped rather than read.
  const messages = Array.isArray(body.messages) ? body.messages.filter(isRecord) : [];
  const system = messages
    .filter((message) => message.role === 'system' || message.role === 'developer')
    .map((message) => textOf(message.content))
    .join('\n\n');
  const turns = messages.filter((message) => message.role === 'user' || message.role === 'assistant').map((message) => ({ role: message.role, content: textOf(message.content) }));
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  return {
    model,
    max_tokens: typeof maxTokens === 'number' ? maxTokens : DEFAULT_MAX_TOKENS,
    messages: turns,
    ...(system ? { system } : {}),
    ...(typeof body.temperature === 'number' ? { temperature: body.temperature } : {}),
    ...(Array.isArray(body.stop) ? { stop_sequences: body.stop } : typeof body.stop === 'string' ? { stop_sequences: [body.stop] } : {}),
  };
}

export function toOpenAi(body: unknown, model: string, now: number): Record<string, unknown> {
  const reply = (body ?? {}) as {
    id?: string;
    model?: string;
    content?: Array<{ type?: string; text?: string }>;
    stop_reason?: string;
    usage?: { input_tokens?: number; output_tokens?: number; cache_read_input_tokens?: number; cache_creation_input_tokens?: number };
  };
  const text = (reply.content ?? [])
    .filter((part) => part.type === 'text')
    .map((part) => part.text ?? '')
    .join('');
  // Anthropic counts cache reads and writes beside `input_tokens`, OpenAI inside `prompt_tokens`: the OpenAI shape
  // adds them in and names the reads `cached_tokens`. Without prompt caching (asp sends no cache_control) both are 0.
  const cacheRead = tokens(reply.usage?.cache_read_input_tokens);
  const input = tokens(reply.usage?.input_tokens) + cacheRead + tokens(reply.usage?.cache_creation_input_tokens);
  const output = tokens(reply.usage?.output_tokens);
  return {
    id: reply.id ?? 'anthropic',
    object: 'chat.completion',
    created: Math.floor(now / 1000),
    model: reply.model ?? model,
    choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: reply.stop_reason === 'max_tokens' ? 'length' : 'stop' }],
    usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output, ...(cacheRead > 0 ? { prompt_tokens_details: { cached_tokens: cacheRead } } : {}) },
  };
}

function tokens(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

function toOpenAiError(body: unknown): unknown {
  const error = valueAt(body, 'error');
  return error ? { error: { message: valueAt(error, 'message') ?? 'error', type: valueAt(error, 'type') ?? 'anthropic_error' } } : body;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((part: unknown) => (typeof part === 'string' ? part : textField(part))).join('');
  return '';
}

function textField(part: unknown): string {
  const text = valueAt(part, 'text');
  return typeof text === 'string' ? text : '';
}
