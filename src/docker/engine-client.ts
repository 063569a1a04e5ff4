import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { z } from 'zod';
import { parseJsonWith } from '../config/task-spec.js';
import { AspError } from '../core/asp-error.js';
import { valueAt } from '../core/record-guard.js';

/**
 * A small client of the Docker Engine API over HTTP (a unix socket, or tcp:// and https:// for DOCKER_HOST):
 * JSON calls, raw streams, and the hijacked two-way connection of `attach`. asp uses a dozen endpoints; a general
 * client (dockerode) loads SSH and gRPC stacks at import that cost every `asp` process about a quarter of a second.
 */
export interface EngineTarget {
  socketPath?: string | undefined;
  host?: string | undefined;
  port?: number | undefined;
  protocol: 'http' | 'https';
}

/** The daemon answered with an error status; `json.message` is its own words. */
export class EngineApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly json: { message?: string } | undefined,
  ) {
    super(`(HTTP code ${statusCode}) ${json?.message ?? 'no message'}`);
    this.name = 'EngineApiError';
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

interface RequestOptions {
  query?: Query | undefined;
  /** A JSON body, or a stream sent as it is with `contentType`. */
  body?: unknown;
  stream?: Readable | undefined;
  contentType?: string | undefined;
}

/** Longest error body read from the daemon: its messages are one line. */
const ERROR_BODY_BYTES = 64 * 1024;

/** Parses a DOCKER_HOST value (or nothing: the local socket). */
export function engineTarget(dockerHost: string | undefined): EngineTarget {
  if (!dockerHost) return { socketPath: '/var/run/docker.sock', protocol: 'http' };
  if (dockerHost.startsWith('unix://')) return { socketPath: dockerHost.slice('unix://'.length), protocol: 'http' };
  let url: URL | undefined;
  try {
    url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw new AspError('BAD_INPUT', `DOCKER_HOST=${dockerHost} is not a daemon address asp can use`, 'use unix:///path/to/docker.sock or tcp://host:port');
  }
  const protocol = url.protocol === 'https:' ? 'https' : 'http';
  return { host: url.hostname, port: Number(url.port || (protocol === 'https' ? 2376 : 2375)), protocol };
}

export class EngineClient {
  private readonly agent: http.Agent;

  constructor(private readonly target: EngineTarget) {
    // Kept-alive sockets are reused across the calls of a task; an idle one does not keep the process alive.
    this.agent = target.protocol === 'https' ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  }

  /**
   * A call whose answer is JSON of the shape `reply` describes. The daemon's answers are input from outside asp (an
   * engine of another make or version may say things differently): one that is not JSON, or not that shape, fails
   * here with a message naming the call, not later as a field that is quietly undefined.
   */
  async json<S extends z.ZodType>(method: string, path: string, reply: S, options: RequestOptions = {}): Promise<z.infer<S>> {
    const response = await this.request(method, path, options);
    const parsed = parseJsonWith(await readAll(response), reply);
    if ('value' in parsed) return parsed.value;
    throw new Error(`the daemon's answer to ${method} ${path} is ${'notJson' in parsed ? 'not JSON' : `not what asp expects (${parsed.issues})`}`);
  }

  /** A call made for its effect: the answer (nothing, or JSON asp has no use for) is read to its end, unparsed, so the socket goes back to the pool. */
  async command(method: string, path: string, options: RequestOptions = {}): Promise<void> {
    const response = await this.request(method, path, options);
    await readAll(response, 0);
  }

  /** A call whose answer is a stream (an archive, build progress), handed over unread. */
  stream(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    return this.request(method, path, options);
  }

  /**
   * Upgrades the connection to a raw two-way stream, as `attach` with stdin needs: the socket carries the container's
   * stdin one way and its multiplexed stdout/stderr the other.
   */
  hijack(path: string, query: Query): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const request = this.send('POST', path, query, { 'Content-Type': 'text/plain', Connection: 'Upgrade', Upgrade: 'tcp' }, false);
      request.on('upgrade', (_response, socket: Socket, head: Buffer) => {
        // Held until the caller reads it: nothing the container writes may fall between this and its listener.
        socket.pause();
        if (head.length) socket.unshift(head);
        resolve(socket);
      });
      request.on('response', (response: IncomingMessage) => void failure(response).then(reject, reject));
      request.on('error', reject);
      request.end();
    });
  }

  private request(method: string, path: string, options: RequestOptions): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      let payload: string | undefined;
      if (options.stream) headers['Content-Type'] = options.contentType ?? 'application/octet-stream';
      else if (options.body !== undefined) {
        payload = JSON.stringify(options.body);
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(Buffer.byteLength(payload));
      }
      const request = this.send(method, path, options.query, headers, true);
      request.on('response', (response: IncomingMessage) => {
        const status = response.statusCode ?? 0;
        // 304: already so (a container already started or stopped): nothing to do is success.
        if ((status >= 200 && status < 300) || status === 304) resolve(response);
        else void failure(response).then(reject, reject);
      });
      request.on('error', reject);
      if (options.stream) {
        options.stream.on('error', (error) => request.destroy(error));
        options.stream.pipe(request);
      } else request.end(payload);
    });
  }

  private send(method: string, path: string, query: Query | undefined, headers: Record<string, string>, pooled: boolean): http.ClientRequest {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) search.set(key, String(value));
    const target = this.target;
    const options: http.RequestOptions = {
      method,
      path: `${path}${search.size ? `?${search}` : ''}`,
      headers: { Host: 'docker', ...headers },
      // A hijacked socket leaves the pool for good: give it a connection of its own.
      agent: pooled ? this.agent : false,
      ...(target.socketPath ? { socketPath: target.socketPath } : { host: target.host, port: target.port }),
    };
    return target.protocol === 'https' ? https.request(options) : http.request(options);
  }
}

/** Reads an error answer into an EngineApiError (its `message` field when it is JSON). */
async function failure(response: IncomingMessage): Promise<EngineApiError> {
  const text = await readAll(response, ERROR_BODY_BYTES).catch(() => '');
  let json: { message?: string } | undefined;
  try {
    const message = valueAt(JSON.parse(text), 'message');
    json = typeof message === 'string' ? { message } : {};
  } catch {
    json = text.trim() ? { message: text.trim() } : undefined;
  }
  return new EngineApiError(response.statusCode ?? 0, json);
}

function readAll(stream: Readable, limit = Number.POSITIVE_INFINITY): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      if (size < limit) parts.push(chunk);
      size += chunk.length;
    });
    stream.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    stream.on('error', reject);
  });
}

/**
 * Splits the multiplexed output of a container without a TTY: frames of an 8-byte header (stream id, three zero
 * bytes, big-endian length) and the payload. Stream 1 goes to `stdout`, 2 to `stderr`.
 */
export function demultiplex(source: Readable, stdout: Writable, stderr: Writable): void {
  let pending: Buffer = Buffer.alloc(0);
  source.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 8) {
      const length = pending.readUInt32BE(4);
      if (pending.length < 8 + length) break;
      const payload = pending.subarray(8, 8 + length);
      if (pending[0] === 2) stderr.write(payload);
      else stdout.write(payload);
      pending = pending.subarray(8 + length);
    }
  });
  // A hijacked socket comes paused (see hijack): reading starts here, with the listener in place.
  source.resume();
}
