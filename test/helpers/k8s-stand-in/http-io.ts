import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { badRequest, type KubeStatus } from './api-status.js';

/** The largest request body taken (etcd's object limit is about 1.5 MB; the API server's request limit 3 MB). */
const BODY_LIMIT = 3 * 1024 * 1024;

/** The JSON body, undefined when there is none; 400 when it is not JSON, 413 when it is too large. */
export async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size > BODY_LIMIT) throw badRequest('the request body is too large');
    chunks.push(buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw badRequest(`the body of the request could not be decoded as JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export function sendJson(response: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
  response.end(text);
}

export function sendStatus(response: ServerResponse, status: KubeStatus): void {
  sendJson(response, status.code, status);
}

/** Answers an upgrade request with a Status instead of switching protocols, and closes the connection. */
export function refuseUpgrade(socket: Duplex, status: KubeStatus): void {
  const text = JSON.stringify(status);
  socket.end(`HTTP/1.1 ${status.code} ${STATUS_CODES[status.code] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
}

export function queryOf(url: URL): Record<string, string> {
  return Object.fromEntries(url.searchParams.entries());
}
