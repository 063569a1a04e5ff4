/**
 * The sandbox's model endpoint: an OpenAI-compatible HTTP server on the container's own loopback. It holds no key
 * and has no network: every call goes to the host's model gateway as a `model.request` on stdout, and the answer
 * comes back on stdin (`model.chunk`s, then `model.response`). Agent CLIs that speak the OpenAI API point
 * OPENAI_BASE_URL at it and run unchanged.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isRecord } from '../src/core/record-guard.js';
import { AGENT_HEADER, AGENT_NAME_PATTERN, type ProtocolMessage } from '../src/protocol/messages.js';
import type { HostInput } from './host-input.js';

/** The host accepts protocol lines up to 1 MiB; a request body (escaped into one line) stays well under it. */
export const MAX_REQUEST_BYTES = 768 * 1024;

interface Pending {
  onChunk(data: unknown): void;
  onResponse(status: number, body: unknown): void;
}

export interface ModelEndpoint {
  url: string;
  close(): Promise<void>;
}

export interface ModelEndpointOptions {
  port: number;
  model: string;
  /** The step running now: the host hangs the call's generation under its span. */
  currentStep: () => string;
  emit: (message: ProtocolMessage) => void;
  /** The container's stdin, where the host's answers arrive. */
  host: HostInput;
}

export async function startModelEndpoint(options: ModelEndpointOptions): Promise<ModelEndpoint> {
  const pending = new Map<string, Pending>();
  let counter = 0;
  options.host.listen(
    (message) => {
      const waiting = pending.get(message.id);
      if (!waiting) return;
      if (message.type === 'model.chunk') waiting.onChunk(message.data);
      else {
        pending.delete(message.id);
        waiting.onResponse(message.status, message.body);
      }
    },
    () => {
      // The host is gone: nobody will answer the calls in flight.
      for (const [id, waiting] of pending) {
        pending.delete(id);
        waiting.onResponse(502, errorBody('the asp model gateway closed the connection'));
      }
    },
  );

  const server = createServer((request, response) => {
    void route(request, response).catch((error: unknown) => {
      if (!response.headersSent) sendJson(response, 500, errorBody(`asp model endpoint: ${error instanceof Error ? error.message : String(error)}`));
      else response.end();
    });
  });

  async function route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = (request.url ?? '/').split('?')[0] ?? '/';
    if (request.method === 'GET' && /^(\/v1)?\/models\/?$/.test(url)) {
      sendJson(response, 200, { object: 'list', data: [{ id: options.model, object: 'model', owned_by: 'asp' }] });
      return;
    }
    if (request.method !== 'POST' || !/^(\/v1)?\/chat\/completions\/?$/.test(url)) {
      sendJson(response, 404, errorBody(`no route ${request.method ?? ''} ${url}: the asp model endpoint serves POST /v1/chat/completions`));
      return;
    }
    const text = await readBody(request, MAX_REQUEST_BYTES);
    if (text === undefined) {
      sendJson(response, 413, errorBody(`request body larger than ${MAX_REQUEST_BYTES} bytes`));
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      sendJson(response, 400, errorBody('request body is not JSON'));
      return;
    }
    if (!isRecord(body) || Array.isArray(body)) {
      sendJson(response, 400, errorBody('request body is not a JSON object'));
      return;
    }
    const requestBody = body;
    const agent = agentOf(request);
    counter += 1;
    const id = `m${counter}`;
    const streaming = requestBody.stream === true;
    let started = false;
    const startStream = () => {
      if (started) return;
      started = true;
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    };
    await new Promise<void>((resolve) => {
      pending.set(id, {
        onChunk(data) {
          if (!streaming) return;
          startStream();
          response.write(`data: ${JSON.stringify(data)}\n\n`);
        },
        onResponse(status, answer) {
          if (streaming && (started || status < 400)) {
            startStream();
            if (status >= 400) response.write(`data: ${JSON.stringify(answer)}\n\n`);
            response.end('data: [DONE]\n\n');
          } else sendJson(response, status, answer ?? {});
          resolve();
        },
      });
      // A client that hangs up leaves nothing to answer; the host's reply is then dropped.
      response.on('close', () => {
        if (pending.delete(id)) resolve();
      });
      options.emit({ type: 'model.request', id, step: options.currentStep(), ...(agent ? { agent } : {}), body: requestBody });
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${options.port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The agent a client names in AGENT_HEADER. A name the host would refuse is dropped here: the host rejects a
 * `model.request` line with a bad field whole, and the call would then never be answered.
 */
function agentOf(request: IncomingMessage): string | undefined {
  const value = request.headers[AGENT_HEADER];
  const name = (Array.isArray(value) ? value[0] : value)?.trim();
  return name && AGENT_NAME_PATTERN.test(name) ? name : undefined;
}

function readBody(request: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let over = false;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      else parts.push(chunk);
    });
    request.on('end', () => resolve(over ? undefined : Buffer.concat(parts).toString('utf8')));
    request.on('error', reject);
  });
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

function errorBody(message: string): { error: { message: string; type: string } } {
  return { error: { message, type: 'asp_gateway_error' } };
}
