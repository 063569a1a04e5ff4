import { afterAll, afterEach, beforeAll } from 'vitest';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { decodeJsonRequest, decodeProtobufRequest, type DecodedSpan } from './otlp-decode.js';

/**
 * A local stand-in for Langfuse (no real server runs on these machines): the two routes asp uses,
 * `POST /api/public/otel/v1/traces` (OTLP, JSON or protobuf, gzip or not) and `POST /api/public/scores`, with
 * Basic auth checked and everything that arrived recorded. Its modes play the failures asp must survive.
 */
export type ReceiverMode =
  | 'ok'
  | '500' // answers every request with HTTP 500
  | '401' // refuses every key pair
  | 'slow' // takes the request and answers only after `slowMs` (30 s by default)
  | 'down'; // not listening: connection refused on its port

export interface ReceivedScore {
  id?: string;
  traceId?: string;
  name: string;
  value: number;
  dataType?: string;
  comment?: string;
  environment?: string;
}

export interface ReceivedRequest {
  path: string;
  status: number | 'abandoned';
  contentType: string;
  contentEncoding: string;
  bytes: number;
  spans: number;
}

export interface LangfuseReceiver {
  readonly url: string;
  readonly publicKey: string;
  readonly secretKey: string;
  /** Settings' `langfuse` for this receiver. */
  readonly target: { publicKey: string; secretKey: string; baseUrl: string };
  /** Every request that reached a route, with what it was answered. */
  readonly requests: ReceivedRequest[];
  /** Spans and scores of requests answered 2xx, in the order they were taken. */
  readonly spans: DecodedSpan[];
  readonly scores: ReceivedScore[];
  mode(): ReceiverMode;
  setMode(mode: ReceiverMode): Promise<void>;
  /** Bodies larger than this are answered 413 (undefined: no limit). */
  maxBodyBytes: number | undefined;
  reset(): void;
  close(): Promise<void>;
}

export async function startLangfuseReceiver(options: { slowMs?: number; publicKey?: string; secretKey?: string } = {}): Promise<LangfuseReceiver> {
  const publicKey = options.publicKey ?? 'pk-lf-test';
  const secretKey = options.secretKey ?? 'sk-lf-test';
  const slowMs = options.slowMs ?? 30_000;
  const expectedAuth = `Basic ${Buffer.from(`${publicKey}:${secretKey}`).toString('base64')}`;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let mode: ReceiverMode = 'ok';
  let server: Server | undefined;
  let port = 0;

  const receiver: LangfuseReceiver = {
    url: '',
    publicKey,
    secretKey,
    target: { publicKey, secretKey, baseUrl: '' },
    requests: [],
    spans: [],
    scores: [],
    maxBodyBytes: undefined,
    mode: () => mode,
    async setMode(next) {
      if (next === 'down' && mode !== 'down') await stop();
      if (next !== 'down' && mode === 'down') await listen(port);
      mode = next;
    },
    reset() {
      receiver.requests.length = 0;
      receiver.spans.length = 0;
      receiver.scores.length = 0;
    },
    async close() {
      mode = 'down';
      await stop();
    },
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? '').split('?')[0] ?? '';
    if (request.method === 'GET' && path === '/_receiver/stats') {
      return send(response, 200, { spans: receiver.spans.length, scores: receiver.scores.length, requests: receiver.requests.length });
    }
    const route = request.method === 'POST' && (path === '/api/public/otel/v1/traces' || path === '/api/public/scores') ? path : undefined;
    const body = await readBody(request);
    if (!route) return send(response, 404, { message: `no route ${request.method} ${path}` });
    const record: ReceivedRequest = {
      path: route,
      status: 0,
      contentType: request.headers['content-type'] ?? '',
      contentEncoding: request.headers['content-encoding'] ?? '',
      bytes: body.length,
      spans: 0,
    };
    receiver.requests.push(record);
    const answer = (status: number, payload: unknown) => {
      record.status = status;
      send(response, status, payload);
    };
    if (mode === '401' || request.headers.authorization !== expectedAuth) return answer(401, { message: 'Invalid credentials' });
    if (mode === '500') return answer(500, { message: 'Internal Server Error' });
    if (receiver.maxBodyBytes !== undefined && body.length > receiver.maxBodyBytes) return answer(413, { message: 'Request Entity Too Large' });
    let taken: { spans?: DecodedSpan[]; score?: ReceivedScore };
    try {
      taken = route === '/api/public/scores' ? { score: parseScore(body) } : { spans: decodeTraces(body, request) };
    } catch (error) {
      return answer(400, { message: error instanceof Error ? error.message : String(error) });
    }
    record.spans = taken.spans?.length ?? 0;
    const accept = () => {
      // Only what was answered counts as arrived: a request the client gave up on was never taken.
      if (response.destroyed || request.socket.destroyed) {
        record.status = 'abandoned';
        return;
      }
      if (taken.spans) receiver.spans.push(...taken.spans);
      if (taken.score) receiver.scores.push(taken.score);
      answer(200, taken.score ? { id: taken.score.id ?? 'generated' } : {});
    };
    if (mode === 'slow') {
      const timer = setTimeout(() => {
        timers.delete(timer);
        accept();
      }, slowMs);
      timers.add(timer);
      response.on('close', () => {
        if (record.status === 0) record.status = 'abandoned';
      });
      return;
    }
    accept();
  };

  async function listen(at: number): Promise<void> {
    server = createServer((request, response) => {
      handle(request, response).catch((error: unknown) => send(response, 500, { message: String(error) }));
    });
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server?.once('error', reject);
      server?.listen(at, '127.0.0.1', () => resolve());
    });
    port = (server.address() as AddressInfo).port;
  }

  async function stop(): Promise<void> {
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    const closing = server;
    server = undefined;
    if (closing) await new Promise<void>((resolve) => closing.close(() => resolve()));
  }

  await listen(0);
  const url = `http://127.0.0.1:${port}`;
  Object.assign(receiver, { url, target: { publicKey, secretKey, baseUrl: url } });
  return receiver;
}

/**
 * The generation attributes as Langfuse's OTel ingestion names and reads them: JSON text, parsed the way the
 * server parses it (completion start as a JSON-quoted ISO time, which older servers require).
 */
export const GENERATION_ATTRIBUTES = {
  model: 'langfuse.observation.model.name',
  modelParameters: 'langfuse.observation.model.parameters',
  completionStartTime: 'langfuse.observation.completion_start_time',
  usageDetails: 'langfuse.observation.usage_details',
  costDetails: 'langfuse.observation.cost_details',
} as const;

export interface ReceivedGeneration {
  model?: string;
  modelParameters?: Record<string, string | number>;
  completionStartTime?: string;
  usageDetails?: Record<string, number>;
  costDetails?: Record<string, number>;
}

/** Reads a generation span's model, parameters, completion start, usage and cost; throws on what Langfuse could not read. */
export function receivedGeneration(span: DecodedSpan): ReceivedGeneration {
  const attribute = (key: string) => span.attributes[key];
  if (attribute('langfuse.observation.type') !== 'generation') throw new Error(`span ${span.name} is not a generation`);
  const generation: ReceivedGeneration = {};
  const model = attribute(GENERATION_ATTRIBUTES.model);
  if (typeof model === 'string') generation.model = model;
  const parameters = jsonAttribute(span, GENERATION_ATTRIBUTES.modelParameters);
  if (parameters !== undefined)
    generation.modelParameters = recordOf(parameters, (value) => typeof value === 'string' || typeof value === 'number', span, 'model parameters') as Record<string, string | number>;
  const start = jsonAttribute(span, GENERATION_ATTRIBUTES.completionStartTime);
  if (start !== undefined) {
    if (typeof start !== 'string' || Number.isNaN(Date.parse(start))) throw new Error(`span ${span.name}: completion start ${JSON.stringify(start)} is not a JSON-quoted ISO time`);
    generation.completionStartTime = start;
  }
  const usage = jsonAttribute(span, GENERATION_ATTRIBUTES.usageDetails);
  if (usage !== undefined) generation.usageDetails = recordOf(usage, isCount, span, 'usage details') as Record<string, number>;
  const cost = jsonAttribute(span, GENERATION_ATTRIBUTES.costDetails);
  if (cost !== undefined) generation.costDetails = recordOf(cost, (value) => typeof value === 'number' && Number.isFinite(value) && value >= 0, span, 'cost details') as Record<string, number>;
  return generation;
}

function jsonAttribute(span: DecodedSpan, key: string): unknown {
  const text = span.attributes[key];
  if (text === undefined) return undefined;
  if (typeof text !== 'string') throw new Error(`span ${span.name}: ${key} is not a string`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`span ${span.name}: ${key} is not JSON: ${text.slice(0, 100)}`);
  }
}

function recordOf(value: unknown, valid: (entry: unknown) => boolean, span: DecodedSpan, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.values(value).every(valid))
    throw new Error(`span ${span.name}: ${what} ${JSON.stringify(value)} is not an object of valid values`);
  return value as Record<string, unknown>;
}

function isCount(value: unknown): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

function decodeTraces(body: Buffer, request: IncomingMessage): DecodedSpan[] {
  const raw = request.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
  const type = request.headers['content-type'] ?? '';
  if (type.startsWith('application/x-protobuf')) return decodeProtobufRequest(raw);
  if (type.startsWith('application/json')) return decodeJsonRequest(raw.toString('utf8'));
  throw new Error(`unsupported content type "${type}"`);
}

function parseScore(body: Buffer): ReceivedScore {
  const score = JSON.parse(body.toString('utf8')) as ReceivedScore;
  if (typeof score.name !== 'string' || typeof score.value !== 'number') throw new Error('a score needs a name and a numeric value');
  return score;
}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

function send(response: ServerResponse, status: number, payload: unknown): void {
  if (response.destroyed || response.headersSent) return;
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(payload));
}

/**
 * One receiver for a describe block: started before its tests, closed after them, and back to `ok`, no size
 * limit and nothing recorded between tests. The handle reads through to the live receiver.
 */
export function useLangfuseReceiver(): LangfuseReceiver {
  let live: LangfuseReceiver | undefined;
  beforeAll(async () => {
    live = await startLangfuseReceiver();
  });
  afterAll(async () => {
    await live?.close();
  });
  afterEach(async () => {
    if (!live) return;
    await live.setMode('ok');
    live.maxBodyBytes = undefined;
    live.reset();
  });
  const current = () => {
    if (!live) throw new Error('the Langfuse receiver is used outside its describe block');
    return live;
  };
  return new Proxy({} as LangfuseReceiver, {
    get: (_target, key) => {
      const value = Reflect.get(current(), key);
      return typeof value === 'function' ? value.bind(current()) : value;
    },
    set: (_target, key, value) => Reflect.set(current(), key, value),
  });
}
