import { spawn } from 'node:child_process';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Duplex, type Readable, type Writable } from 'node:stream';
import type { z } from 'zod';
import { parseJsonWith } from '../config/task-spec.js';
import { AspError, systemErrorCode } from '../core/asp-error.js';
import { valueAt } from '../core/record-guard.js';
import { DEFAULT_SOCKET, type DaemonAddress } from './daemon-address.js';

/**
 * A small client of the Docker Engine API over HTTP (a unix socket, tcp:// in plain HTTP or TLS, or ssh:// through
 * the system `ssh` running `docker system dial-stdio` on the far side, as the docker CLI does): JSON calls, raw
 * streams, and the hijacked two-way connection of `attach`. asp uses a dozen endpoints; a general client (dockerode)
 * loads SSH and gRPC stacks at import that cost every `asp` process about a quarter of a second.
 */
export interface EngineTarget {
  socketPath?: string | undefined;
  host?: string | undefined;
  port?: number | undefined;
  protocol: 'http' | 'https';
  /** For https: the PEM material and whether the daemon's certificate is checked. */
  tls?: { ca: string | undefined; cert: string | undefined; key: string | undefined; rejectUnauthorized: boolean } | undefined;
  /** For ssh://: the program and arguments that give a connection on their stdin/stdout. */
  ssh?: { command: string; args: string[] } | undefined;
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

/** Nothing moved on the connection for `ms`: the daemon accepted it and went quiet. */
export class EngineTimeoutError extends Error {
  readonly code = 'ASP_ENGINE_TIMEOUT';
  /** `ms` as a person reads it: "30 s". */
  readonly after: string;
  constructor(readonly ms: number) {
    super(`no answer within ${formatSeconds(ms)}`);
    this.after = formatSeconds(ms);
    this.name = 'EngineTimeoutError';
  }
}

/** The ssh command that carries the connection failed; `stderr` is what it said. */
export class SshConnectionError extends Error {
  readonly code = 'ASP_SSH_FAILED';
  constructor(
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`ssh exited ${exitCode ?? 'on a signal'}${stderr ? `: ${stderr}` : ''}`);
    this.name = 'SshConnectionError';
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

interface RequestOptions {
  query?: Query | undefined;
  /** A JSON body, or a stream sent as it is with `contentType`. */
  body?: unknown;
  stream?: Readable | undefined;
  contentType?: string | undefined;
  /**
   * How long the connection may stay silent (nothing sent, nothing received) before the call fails: the client's
   * `timeoutMs` unless given; 0 for none (wait, whose answer comes when the container ends).
   */
  idleMs?: number | undefined;
  /** Not versioned (the one call made before the version is known: GET /version). */
  unversioned?: boolean | undefined;
}

/** Longest error body read from the daemon: its messages are one line. */
const ERROR_BODY_BYTES = 64 * 1024;

/** Methods whose request can be sent again when a kept-alive socket turned out to be closed by the daemon. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'DELETE']);

/** Parses a daemon address (DOCKER_HOST's syntax) into where to connect; `tls` and `sshCommand` as discovery found them. */
export function engineTarget(dockerHost: string | undefined, options: { tls?: DaemonAddress['tls']; sshCommand?: string | undefined } = {}): EngineTarget {
  if (!dockerHost) return { socketPath: DEFAULT_SOCKET, protocol: 'http' };
  if (dockerHost.startsWith('unix://')) return { socketPath: dockerHost.slice('unix://'.length), protocol: 'http' };
  if (dockerHost.startsWith('ssh://')) return sshTarget(dockerHost, options.sshCommand);
  let url: URL | undefined;
  try {
    url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw new AspError('BAD_INPUT', `DOCKER_HOST=${dockerHost} is not a daemon address asp can use`, 'use unix:///path/to/docker.sock, tcp://host:port or ssh://[user@]host');
  }
  const tls = options.tls;
  const protocol = url.protocol === 'https:' || tls ? 'https' : 'http';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    host,
    port: Number(url.port || (protocol === 'https' ? 2376 : 2375)),
    protocol,
    ...(protocol === 'https' ? { tls: { ca: tls?.ca, cert: tls?.cert, key: tls?.key, rejectUnauthorized: tls?.verify ?? true } } : {}),
  };
}

/**
 * ssh://[user@]host[:port]: `ssh -o ConnectTimeout=30 -o BatchMode=yes [-l user] [-p port] -- host docker system
 * dial-stdio`, the docker CLI's command line. ASP_SSH_COMMAND replaces `ssh` (words split on spaces, as a program
 * and its options: `ssh -i key -F cfg`); BatchMode keeps ssh from asking for a password on a terminal it does not own.
 */
function sshTarget(dockerHost: string, sshCommand: string | undefined): EngineTarget {
  let url: URL;
  try {
    url = new URL(dockerHost);
  } catch {
    throw new AspError('BAD_INPUT', `DOCKER_HOST=${dockerHost} is not an ssh address asp can use`, 'use ssh://[user@]host[:port]');
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const user = decodeURIComponent(url.username);
  if (!host || host.startsWith('-') || user.startsWith('-') || url.password || (url.pathname && url.pathname !== '/')) {
    // Never the password itself in a message that may end up in a CI log.
    const shown = url.password ? dockerHost.replace(`:${url.password}@`, ':***@') : dockerHost;
    throw new AspError('BAD_INPUT', `DOCKER_HOST=${shown} is not an ssh address asp can use`, 'use ssh://[user@]host[:port], without a password or a path');
  }
  const words = (sshCommand?.trim() || 'ssh').split(/\s+/);
  const [command = 'ssh', ...options] = words;
  const args = [...options, '-o', 'ConnectTimeout=30', '-o', 'BatchMode=yes', ...(user ? ['-l', user] : []), ...(url.port ? ['-p', url.port] : []), '--', host, 'docker', 'system', 'dial-stdio'];
  return { protocol: 'http', ssh: { command, args } };
}

export class EngineClient {
  private readonly agent: http.Agent;
  /** The API version every path is prefixed with once known (`/v1.41/...`); unset, paths go unversioned. */
  apiVersion: string | undefined;

  constructor(
    private readonly target: EngineTarget,
    /** How long a call may wait in silence (see RequestOptions.idleMs). */
    readonly timeoutMs = 30_000,
  ) {
    // Kept-alive sockets are reused across the calls of a task; an idle one does not keep the process alive.
    this.agent = target.protocol === 'https' ? new https.Agent({ keepAlive: true, ...target.tls }) : new http.Agent({ keepAlive: true });
    const ssh = target.ssh;
    // Each pooled connection is an ssh process of its own, reused while it lives, as the docker CLI's are.
    if (ssh) this.agent.createConnection = () => sshConnection(ssh);
  }

  /**
   * A call whose answer is JSON of the shape `reply` describes. The daemon's answers are input from outside asp (an
   * engine of another make or version may say things differently): one that is not JSON, or not that shape, fails
   * here with a message naming the call, not later as a field that is quietly undefined.
   */
  async json<S extends z.ZodType>(method: string, path: string, reply: S, options: RequestOptions = {}): Promise<z.infer<S>> {
    const parsed = parseJsonWith(await this.exchange(method, path, options, Number.POSITIVE_INFINITY), reply);
    if ('value' in parsed) return parsed.value;
    throw new Error(`the daemon's answer to ${method} ${path} is ${'notJson' in parsed ? 'not JSON' : `not what asp expects (${parsed.issues})`}`);
  }

  /** A call made for its effect: the answer (nothing, or JSON asp has no use for) is read to its end, unparsed, so the socket goes back to the pool. */
  async command(method: string, path: string, options: RequestOptions = {}): Promise<void> {
    await this.exchange(method, path, options, 0);
  }

  /** A call whose answer is a stream (an archive, build progress), handed over unread; silence on it still ends it. */
  stream(method: string, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    return this.request(method, path, options, false);
  }

  /**
   * Upgrades the connection to a raw two-way stream, as `attach` with stdin needs: the socket carries the container's
   * stdin one way and its multiplexed stdout/stderr the other. The upgrade must come within the timeout; after it,
   * the stream has no timeout (the task's deadline ends it).
   */
  hijack(path: string, query: Query): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const request = this.send('POST', this.versioned(path, false), query, { 'Content-Type': 'text/plain', Connection: 'Upgrade', Upgrade: 'tcp' }, false);
      const timer = this.silenceTimer(request, this.timeoutMs);
      request.on('upgrade', (_response, socket: Duplex, head: Buffer) => {
        timer.stop();
        // Held until the caller reads it: nothing the container writes may fall between this and its listener.
        socket.pause();
        if (head.length) socket.unshift(head);
        resolve(socket);
      });
      request.on('response', (response: IncomingMessage) => {
        timer.stop();
        void failure(response).then(reject, reject);
      });
      request.on('error', (error) => {
        timer.stop();
        reject(error);
      });
      request.end();
    });
  }

  /** Sends a request and reads its whole answer (at most `limit` bytes kept), retrying once on a stale kept-alive socket. */
  private async exchange(method: string, path: string, options: RequestOptions, limit: number): Promise<string> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        const response = await this.request(method, path, options, true);
        return await readAll(response, limit);
      } catch (error) {
        if (attempt === 1 && error instanceof StaleSocketError) continue;
        throw error instanceof StaleSocketError ? error.cause : error;
      }
    }
  }

  private request(method: string, path: string, options: RequestOptions, retryable: boolean): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      let payload: string | undefined;
      if (options.stream) headers['Content-Type'] = options.contentType ?? 'application/octet-stream';
      else if (options.body !== undefined) {
        payload = JSON.stringify(options.body);
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(Buffer.byteLength(payload));
      }
      const request = this.send(method, this.versioned(path, options.unversioned), options.query, headers, true);
      const timer = this.silenceTimer(request, options.idleMs ?? this.timeoutMs);
      request.on('response', (response: IncomingMessage) => {
        timer.touch();
        // Not a 'data' listener on the response: that would start it flowing before its reader is there.
        response.on('end', timer.stop);
        response.on('close', timer.stop);
        const status = response.statusCode ?? 0;
        // 304: already so (a container already started or stopped): nothing to do is success.
        if ((status >= 200 && status < 300) || status === 304) resolve(response);
        else void failure(response).then(reject, reject);
      });
      request.on('error', (error) => {
        timer.stop();
        // A kept-alive socket the daemon closed while it sat in the pool: the request never reached it.
        const stale = retryable && request.reusedSocket && IDEMPOTENT.has(method) && !options.stream && isReset(error);
        reject(stale ? new StaleSocketError(error) : error);
      });
      if (options.stream) {
        options.stream.on('error', (error) => request.destroy(error));
        options.stream.on('data', timer.touch);
        options.stream.pipe(request);
      } else request.end(payload);
    });
  }

  private versioned(path: string, unversioned: boolean | undefined): string {
    return this.apiVersion && !unversioned ? `/v${this.apiVersion}${path}` : path;
  }

  /**
   * Fails `request` with an EngineTimeoutError after `ms` in which nothing moved; `touch` restarts the count, `stop`
   * ends it. 0: no timer.
   */
  private silenceTimer(request: http.ClientRequest, ms: number): { touch: () => void; stop: () => void } {
    if (!ms) return { touch: () => {}, stop: () => {} };
    let timer: NodeJS.Timeout | undefined;
    let socket: Duplex | undefined;
    const arm = () => {
      timer = setTimeout(() => request.destroy(new EngineTimeoutError(ms)), ms);
      timer.unref();
    };
    const touch = () => {
      if (timer === undefined) return;
      clearTimeout(timer);
      arm();
    };
    // What arrives is seen on the socket, which the http parser reads anyway; the listener goes with the call (a
    // kept-alive socket serves the next call too).
    request.on('socket', (connection: Duplex) => {
      socket = connection;
      if (timer !== undefined) connection.on('data', touch);
    });
    arm();
    return {
      touch,
      stop: () => {
        clearTimeout(timer);
        timer = undefined;
        socket?.off('data', touch);
      },
    };
  }

  private send(method: string, path: string, query: Query | undefined, headers: Record<string, string>, pooled: boolean): http.ClientRequest {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) search.set(key, String(value));
    const target = this.target;
    const ssh = target.ssh;
    const options: https.RequestOptions = {
      method,
      path: `${path}${search.size ? `?${search}` : ''}`,
      // A socket or a pipe has no host name to say; over tcp the real one, which TLS checks the certificate against.
      headers: target.host ? headers : { Host: 'docker', ...headers },
      ...(target.socketPath ? { socketPath: target.socketPath } : { host: target.host, port: target.port }),
      ...(!pooled && target.tls ? target.tls : {}),
      // Plain http names no TLS server: without this node works one out of the host on every request, and its first
      // IPv6 test compiles a regex that costs a start-up ~5-10 ms (node's _http_agent calculateServerName).
      ...(target.protocol === 'http' ? { servername: '' } : {}),
      // A hijacked socket leaves the pool for good: it gets a connection of its own (over ssh, its own ssh process:
      // node uses createConnection only when no agent is named at all, not with agent: false).
      ...(pooled ? { agent: this.agent } : ssh ? { createConnection: () => sshConnection(ssh) } : { agent: false }),
    };
    return target.protocol === 'https' ? https.request(options) : http.request(options);
  }
}

class StaleSocketError extends Error {
  constructor(override readonly cause: unknown) {
    super('stale kept-alive socket');
  }
}

function isReset(error: unknown): boolean {
  const code = systemErrorCode(error);
  return code === 'ECONNRESET' || code === 'EPIPE' || (error instanceof Error && error.message === 'socket hang up');
}

/** A child's pipe is a net.Socket, typed as a plain stream: it can be ref'd and unref'd. */
function refable(stream: unknown): stream is { ref(): void; unref(): void } {
  return typeof stream === 'object' && stream !== null && 'ref' in stream && typeof stream.ref === 'function' && 'unref' in stream && typeof stream.unref === 'function';
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * A connection carried by a child process's stdin and stdout (ssh running `docker system dial-stdio`), shaped as
 * the http client needs a socket to be. The process goes with the connection; what it printed on stderr becomes
 * the error when it ends before the connection did.
 */
export function sshConnection(ssh: NonNullable<EngineTarget['ssh']>): Duplex {
  const child = spawn(ssh.command, ssh.args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2000)));
  let ended = false;
  const connection = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      // A write into an ssh that already failed is not the error to report: its exit status and stderr are.
      child.stdin.write(chunk, () => callback());
    },
    final(callback) {
      child.stdin.end(callback);
    },
    read() {
      child.stdout.resume();
    },
    destroy(error, callback) {
      ended = true;
      child.kill('SIGTERM');
      callback(error);
    },
  });
  child.stdout.on('data', (chunk: Buffer) => {
    if (!connection.push(chunk)) child.stdout.pause();
  });
  // The end of the connection is when ssh ends: then its exit status says whether that was an error (a refused
  // connection, an unknown host) or the daemon closing, which stdout's end alone cannot tell.
  child.stdin.on('error', () => {}); // the exit status says why
  child.on('error', (error) => connection.destroy(systemErrorCode(error) === 'ENOENT' ? new SshConnectionError(null, `${ssh.command} is not installed or not on PATH`) : error));
  child.on('close', (code) => {
    if (ended) return;
    ended = true;
    if (code === 0) connection.push(null);
    else connection.destroy(new SshConnectionError(code, stderr.trim().split('\n').slice(-2).join('; ')));
  });
  // What http's client calls on a net.Socket; a pipe has no Nagle, keep-alive probes or timeouts of its own. A
  // connection resting in the pool is unref'd: the ssh process under it must not keep asp from exiting either.
  const pipes: Array<{ ref(): void; unref(): void }> = [];
  for (const pipe of [child.stdin, child.stdout, child.stderr] as unknown[]) if (refable(pipe)) pipes.push(pipe);
  return Object.assign(connection, {
    setNoDelay: () => connection,
    setKeepAlive: () => connection,
    setTimeout: () => connection,
    ref: () => {
      child.ref();
      for (const pipe of pipes) pipe.ref();
      return connection;
    },
    unref: () => {
      child.unref();
      for (const pipe of pipes) pipe.unref();
      return connection;
    },
  });
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
