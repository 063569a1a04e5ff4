/**
 * The sandbox's egress proxy (`--allow-host`): an HTTP proxy on the container's own loopback. The container has no
 * interface but `lo`; each connection a step opens through the proxy (a CONNECT tunnel for HTTPS, or a plain HTTP
 * request, forwarded) becomes a channel of the task protocol (messages.ts, NetOpenMessage), and the host alone
 * decides whether to dial its target. The proxy enforces nothing: it only carries. What it adds is flow control on
 * each channel, so that a download moves only as fast as its client reads and never fills stdin or stdout for the
 * model gateway and the rest of the protocol.
 */
import { createServer, request as httpRequest, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { NetHostMessage } from '../src/protocol/host-messages.js';
import { NET_CHUNK_BYTES, NET_WINDOW_BYTES, type ProtocolMessage } from '../src/protocol/messages.js';
import type { HostInput } from './host-input.js';

export interface EgressProxyOptions {
  port: number;
  /** The step running now: its span holds the connection. */
  currentStep: () => string;
  emit: (message: ProtocolMessage) => void;
  /** The container's stdin, where the host's side of each channel arrives. */
  host: HostInput;
  /** Writes a line to the running step's stderr, so its output says why a connection was refused or cut. */
  tell: (text: string) => void;
}

export interface EgressProxy {
  url: string;
  close(): Promise<void>;
}

/** Why the host would not connect: what the proxy answers the client. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** Headers of one hop only (RFC 9110 §7.6.1), never forwarded, and the proxy's own. */
const HOP_HEADERS = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'upgrade']);
/** `host:port` of a CONNECT: a name or an IPv4 address, or an IPv6 one in brackets, and a port. */
const AUTHORITY = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,255}):(\d{1,5})$/;

/**
 * One channel as a stream: what is written to it goes to the host as `net.data` lines (each write waits while a
 * window of bytes is unacknowledged), what the host sends comes out of it (acknowledged once it is read, so a slow
 * reader holds the host's side back, not the stream of everything else).
 */
class Channel extends Duplex {
  readonly opened: Promise<void>;
  settle!: { open: () => void; refuse: (refusal: Refusal) => void };
  /** Set when the host ended the channel: then it need not be told. */
  closedByHost = false;
  private unacked = 0;
  private waiting: (() => void) | undefined;
  /** Bytes the host sent that are buffered here unread: acknowledged when the reader asks for more. */
  private owed = 0;

  constructor(
    readonly id: string,
    readonly target: string,
    private readonly toHost: (message: ProtocolMessage) => void,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024 });
    this.opened = new Promise((open, refuse) => (this.settle = { open, refuse }));
    this.opened.catch(() => {});
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.sendData(chunk, callback);
  }

  private sendData(chunk: Buffer, callback: (error?: Error | null) => void): void {
    // Nobody at the far end any more: what the client still writes goes nowhere.
    if (this.closedByHost) {
      callback();
      return;
    }
    let rest = chunk;
    while (rest.length) {
      if (this.unacked >= NET_WINDOW_BYTES) {
        const left = rest;
        this.waiting = () => this.sendData(left, callback);
        return;
      }
      const piece = rest.subarray(0, Math.min(NET_CHUNK_BYTES, NET_WINDOW_BYTES - this.unacked));
      this.unacked += piece.length;
      this.toHost({ type: 'net.data', id: this.id, data: piece.toString('base64') });
      rest = rest.subarray(piece.length);
    }
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.closedByHost) this.toHost({ type: 'net.end', id: this.id });
    callback();
  }

  override _read(): void {
    if (this.owed > 0) this.ack();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.closedByHost) this.toHost({ type: 'net.close', id: this.id });
    this.waiting = undefined;
    callback(error);
  }

  /** The far end closed by itself: what it sent is still read to the end, then the channel goes. */
  closeGracefully(): void {
    this.push(null);
    if (this.readableEnded) this.destroy();
    else this.once('end', () => this.destroy());
  }

  /** The host took `bytes` of ours: a write waiting for room goes on. */
  acked(bytes: number): void {
    this.unacked = Math.max(0, this.unacked - bytes);
    const waiting = this.waiting;
    if (waiting && this.unacked < NET_WINDOW_BYTES) {
      this.waiting = undefined;
      waiting();
    }
  }

  /** Bytes from the remote end. */
  received(bytes: Buffer): void {
    if (this.destroyed || this.readableEnded) return;
    this.owed += bytes.length;
    if (this.push(bytes)) this.ack();
  }

  private ack(): void {
    while (this.owed > 0) {
      const bytes = Math.min(this.owed, NET_WINDOW_BYTES);
      this.owed -= bytes;
      this.toHost({ type: 'net.ack', id: this.id, bytes });
    }
  }
}

export async function startEgressProxy(options: EgressProxyOptions): Promise<EgressProxy> {
  const channels = new Map<string, Channel>();
  let counter = 0;
  const { emit, tell } = options;

  options.host.listenNet({
    onMessage: (message: NetHostMessage) => {
      const channel = channels.get(message.id);
      if (!channel) return;
      switch (message.type) {
        case 'net.opened':
          channel.settle.open();
          return;
        case 'net.refused':
          channels.delete(message.id);
          channel.closedByHost = true;
          tell(`[asp: egress to ${channel.target} refused: ${message.reason}]`);
          channel.settle.refuse(new Refusal(message.status, message.reason));
          channel.destroy();
          return;
        case 'net.ack':
          channel.acked(message.bytes);
          return;
        case 'net.end':
          channel.push(null);
          return;
        case 'net.close':
          channels.delete(message.id);
          channel.closedByHost = true;
          channel.settle.refuse(new Refusal(502, message.reason ?? 'the connection closed'));
          if (message.reason) {
            // asp cut it (a cap), or it failed (a reset): what is still buffered is dropped, the client sees an
            // error rather than an end, and the step is told why.
            tell(`[asp: egress connection to ${channel.target} cut: ${message.reason}]`);
            channel.destroy(new Error(message.reason));
          } else channel.closeGracefully();
          return;
        default:
          return;
      }
    },
    onData: (id, bytes) => channels.get(id)?.received(bytes),
    onEnd: () => {
      // The host is gone: no channel has a far end any more.
      for (const channel of channels.values()) {
        channel.closedByHost = true;
        channel.settle.refuse(new Refusal(502, 'the asp host closed the connection'));
        channel.destroy();
      }
      channels.clear();
    },
  });

  const open = (host: string, port: number, via: 'connect' | 'http', method?: string): Channel => {
    counter += 1;
    const id = `c${counter}`;
    const channel = new Channel(id, `${host.includes(':') ? `[${host}]` : host}:${port}`, emit);
    channels.set(id, channel);
    channel.on('close', () => channels.delete(id));
    channel.on('error', () => {});
    emit({ type: 'net.open', id, step: options.currentStep(), host, port, via, ...(method ? { method } : {}) });
    return channel;
  };

  const server = createServer((request, response) => {
    forward(request, response, open);
  });
  server.on('connect', (request: IncomingMessage, socket: Socket, head: Buffer) => tunnel(request, socket, head, open));
  // A client that sends garbage gets a 400 and is hung up on; the proxy goes on serving the others.
  server.on('clientError', (_error, socket: Socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${options.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const channel of channels.values()) channel.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Opener = (host: string, port: number, via: 'connect' | 'http', method?: string) => Channel;

/** CONNECT host:port: a tunnel, spliced to its channel once the host dialed. */
function tunnel(request: IncomingMessage, socket: Socket, head: Buffer, open: Opener): void {
  socket.on('error', () => {});
  const match = AUTHORITY.exec(request.url ?? '');
  const port = Number(match?.[2]);
  if (!match?.[1] || port < 1 || port > 65535) {
    answer(socket, 400, `CONNECT needs host:port, not "${(request.url ?? '').slice(0, 100)}"`);
    return;
  }
  const channel = open(match[1].replace(/^\[|\]$/g, ''), port, 'connect');
  const hangUp = () => channel.destroy();
  socket.on('close', hangUp);
  channel.opened.then(
    () => {
      if (socket.destroyed) return;
      socket.write('HTTP/1.1 200 Connection Established\r\nProxy-Agent: asp-egress\r\n\r\n');
      if (head.length) channel.write(head);
      socket.pipe(channel);
      channel.pipe(socket);
      // A channel that failed resets the client's connection: a cut download must not look complete.
      channel.on('error', () => socket.resetAndDestroy());
      // Once the channel is over the client's socket goes too, but only after what was written to it is flushed.
      channel.on('close', () => (socket.writableEnded && !socket.writableFinished ? socket.once('finish', () => socket.destroy()) : socket.destroy()));
    },
    (refusal: Refusal) => {
      socket.off('close', hangUp);
      answer(socket, refusal.status, refusal.reason);
    },
  );
}

/** A plain HTTP request in absolute form (`GET http://host/path`), sent on over its own channel. */
function forward(request: IncomingMessage, response: ServerResponse, open: Opener): void {
  let url: URL | undefined;
  try {
    url = new URL(request.url ?? '');
  } catch {
    url = undefined;
  }
  if (!url || url.protocol !== 'http:' || url.username || url.password) {
    refuse(
      response,
      400,
      url?.protocol === 'https:'
        ? 'send https:// through CONNECT (HTTPS_PROXY), not as a plain request'
        : `this is asp's egress proxy: it forwards http:// URLs and CONNECT tunnels, not "${(request.url ?? '').slice(0, 100)}"`,
    );
    request.resume();
    return;
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port ? Number(url.port) : 80;
  const channel = open(host, port, 'http', request.method);
  response.on('close', () => channel.destroy());
  channel.opened.then(
    () => {
      const headers: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(request.headers)) if (value !== undefined && !HOP_HEADERS.has(name)) headers[name] = value;
      // One request per channel: the channel is the connection, and it ends with the answer.
      headers.connection = 'close';
      // The host the allowlist judged is the host the server is told (RFC 9112 §3.2.2), whatever Host the client sent.
      headers.host = url.host;
      const upstream = httpRequest({ method: request.method, path: `${url.pathname}${url.search}`, headers, createConnection: () => channel });
      upstream.on('response', (answer) => {
        const kept: string[] = [];
        for (let index = 0; index + 1 < answer.rawHeaders.length; index += 2) {
          const name = answer.rawHeaders[index] ?? '';
          if (!HOP_HEADERS.has(name.toLowerCase())) kept.push(name, answer.rawHeaders[index + 1] ?? '');
        }
        response.writeHead(answer.statusCode ?? 502, answer.statusMessage, kept);
        answer.pipe(response);
        answer.on('error', () => response.destroy());
      });
      upstream.on('error', (error) => {
        if (!response.headersSent) refuse(response, 502, `the connection to ${host}:${port} failed: ${error.message}`);
        else response.destroy();
      });
      request.pipe(upstream);
    },
    (refusal: Refusal) => {
      request.resume();
      refuse(response, refusal.status, refusal.reason);
    },
  );
}

/** A proxy's own answer on a raw socket (CONNECT), with the reason as its one-line body and in a header. */
function answer(socket: Socket, status: number, reason: string): void {
  const body = `asp egress: ${reason}\n`;
  const line = reason.replace(/[^\x20-\x7e]/g, '?');
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Asp-Egress-Refused: ${line}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function refuse(response: ServerResponse, status: number, reason: string): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  const body = `asp egress: ${reason}\n`;
  response.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-asp-egress-refused': reason.replace(/[^\x20-\x7e]/g, '?'),
    connection: 'close',
  });
  response.end(body);
}

/**
 * What steps get: the usual proxy variables, and the settings of clients that do not read them (git through
 * GIT_CONFIG_*, npm, pip, yarn, cargo). The model endpoint and anything else on loopback stay direct.
 */
export function proxyEnv(url: string, base: NodeJS.ProcessEnv): Record<string, string> {
  const loopback = 'localhost,127.0.0.1';
  // git's http.proxy appended to whatever GIT_CONFIG_* the environment carries already.
  const count = Number(base.GIT_CONFIG_COUNT ?? 0);
  const index = Number.isInteger(count) && count >= 0 ? count : 0;
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    NO_PROXY: loopback,
    no_proxy: loopback,
    npm_config_proxy: url,
    npm_config_https_proxy: url,
    npm_config_noproxy: loopback,
    PIP_PROXY: url,
    YARN_HTTP_PROXY: url,
    YARN_HTTPS_PROXY: url,
    CARGO_HTTP_PROXY: url,
    GIT_CONFIG_COUNT: String(index + 1),
    [`GIT_CONFIG_KEY_${index}`]: 'http.proxy',
    [`GIT_CONFIG_VALUE_${index}`]: url,
  };
}
