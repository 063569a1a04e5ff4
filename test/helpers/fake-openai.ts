import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the fake server answers to one chat-completions request. */
export interface FakeAnswer {
  status?: number;
  delayMs?: number;
  content?: string;
  /** A whole body instead of a completion built from `content`. */
  body?: unknown;
  headers?: Record<string, string>;
  usage?: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens: number } };
}

export interface FakeRequest {
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

export interface FakeOpenAi {
  /** Base URL as OPENAI_BASE_URL takes it (ends in /v1). */
  url: string;
  requests: FakeRequest[];
  close(): Promise<void>;
}

/**
 * A local OpenAI-compatible server on 127.0.0.1 with deterministic answers: by default it echoes the last user
 * message; `answer` can script 429s, 500s, slow replies and content per request. Streams SSE when asked.
 */
export async function startFakeOpenAi(answer: (request: FakeRequest, index: number) => FakeAnswer = defaultAnswer): Promise<FakeOpenAi> {
  const requests: FakeRequest[] = [];
  const server = createServer((request, response) => {
    const parts: Buffer[] = [];
    request.on('data', (chunk: Buffer) => parts.push(chunk));
    request.on('end', () => {
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
      } catch {
        /* answered as an empty request */
      }
      const fake = { headers: request.headers, body };
      requests.push(fake);
      const planned = answer(fake, requests.length - 1);
      setTimeout(() => {
        const status = planned.status ?? 200;
        if (status !== 200) {
          response.writeHead(status, { 'content-type': 'application/json', ...planned.headers });
          response.end(JSON.stringify(planned.body ?? { error: { message: `fake error ${status}`, type: 'fake' } }));
          return;
        }
        const usage = planned.usage ?? { prompt_tokens: 10, completion_tokens: 5 };
        const content = planned.content ?? '';
        const completion = planned.body ?? {
          id: `fake-${requests.length}`,
          object: 'chat.completion',
          created: 1_700_000_000,
          model: typeof body.model === 'string' ? body.model : 'fake-model',
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
          usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
        };
        if (body.stream === true) {
          response.writeHead(200, { 'content-type': 'text/event-stream' });
          for (const piece of content.match(/.{1,8}/gs) ?? []) {
            response.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] })}\n\n`);
          }
          response.end('data: [DONE]\n\n');
          return;
        }
        response.writeHead(200, { 'content-type': 'application/json', ...planned.headers });
        response.end(JSON.stringify(completion));
      }, planned.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function defaultAnswer(request: FakeRequest): FakeAnswer {
  const messages = Array.isArray(request.body.messages) ? (request.body.messages as Array<{ content?: unknown }>) : [];
  return { content: `echo: ${String(messages[messages.length - 1]?.content ?? '')}` };
}
