import { parseJson, parseRetryAfter, type ChatCall, type ChatReply, type FetchLike, type ModelProvider } from './provider.js';

/** Any OpenAI-compatible server: OpenAI itself, or whatever OPENAI_BASE_URL points at (vLLM, llama.cpp, a proxy). */
export class OpenAiProvider implements ModelProvider {
  readonly name = 'openai';

  constructor(
    readonly model: string,
    private readonly options: { apiKey: string; baseUrl: string; fetch: FetchLike; now: () => number },
  ) {}

  async chat(call: ChatCall): Promise<ChatReply> {
    const response = await this.options.fetch(`${this.options.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${this.options.apiKey}` },
      body: JSON.stringify({ ...call.body, model: this.model, stream: false }),
      signal: call.signal,
    });
    const body = parseJson(await response.text());
    return { status: response.status, body, retryAfterMs: parseRetryAfter(response.headers.get('retry-after'), this.options.now()) };
  }
}
