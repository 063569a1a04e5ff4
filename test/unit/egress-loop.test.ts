import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Transform, Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Allowlist } from '../../src/config/allowlist.js';
import { systemClock } from '../../src/core/clock.js';
import { EgressBudget, EgressRelay, type EgressConnection, type EgressLimits, type Lookup } from '../../src/egress/egress-relay.js';
import { HostFrameReader, type HostMessage } from '../../src/protocol/host-messages.js';
import { LineSplitter } from '../../src/protocol/line-splitter.js';
import { encodeMessage, NET_CHUNK_BYTES, NET_WINDOW_BYTES, type NetSandboxMessage, type ProtocolMessage } from '../../src/protocol/messages.js';
import { parseProtocolLine } from '../../src/protocol/parse.js';
import { startEgressProxy } from '../../sandbox/egress-proxy.js';
import { HostInput } from '../../sandbox/host-input.js';
import { freePort } from '../helpers/ports.js';

/**
 * The egress loop in one process, no container: the runner's loopback proxy (sandbox/egress-proxy.ts) and the host's
 * relay (src/egress/egress-relay.ts), joined the way a sandbox session joins them. The runner's `emit` becomes a
 * protocol line on a stand-in for the container's stdout, split and parsed as the host does (a tick later, as a pipe
 * would deliver it); the relay writes the host's answers on a PassThrough that stands in for the container's stdin,
 * which the runner reads through HostInput. The targets are HTTP and TCP servers on 127.0.0.1, reached through test
 * names the relay's lookup seam resolves.
 */

const MiB = 1024 * 1024;
const STEP = 'test';
/** The host's limit on one line of the runner's stdout (sandbox-session.ts). */
const STDOUT_LINE_BYTES = 1024 * 1024;
/**
 * Most the container's stdin may hold of one download: the relay writes only while stdin has room, and then one
 * frame, which carries at most what waited of one channel, never more than its window; plus stdin's own 16 KiB.
 */
const STDIN_BOUND = NET_WINDOW_BYTES + 64 * 1024;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Bytes the kernel holds on established loopback TCP connections that touch one of `ports` (sent and not yet taken,
 * received and not yet read), from /proc/net/tcp; undefined where there is no such file (not Linux).
 */
function kernelQueued(ports: number[]): number | undefined {
  let table: string;
  try {
    table = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return undefined;
  }
  let bytes = 0;
  for (const line of table.split('\n').slice(1)) {
    const [, local = '', remote = '', state, queues = ''] = line.trim().split(/\s+/);
    const port = (address: string) => parseInt(address.split(':')[1] ?? '', 16);
    if (state !== '01' || !(ports.includes(port(local)) || ports.includes(port(remote)))) continue;
    const [tx = '0', rx = '0'] = queues.split(':');
    bytes += parseInt(tx, 16) + parseInt(rx, 16);
  }
  return bytes;
}

function isNet(message: ProtocolMessage): message is NetSandboxMessage {
  return message.type === 'net.open' || message.type === 'net.data' || message.type === 'net.ack' || message.type === 'net.end' || message.type === 'net.close';
}

interface LoopOptions {
  allow: string[];
  limits?: Partial<EgressLimits>;
  /** Test names and what the lookup seam resolves them to; any other name fails as ENOTFOUND. */
  names?: Record<string, string[]>;
  /** Between the container's stdin and the runner's reader, e.g. a slow wire. */
  wire?: Transform;
}

interface Loop {
  proxyPort: number;
  relay: EgressRelay;
  stdin: PassThrough;
  told: string[];
  records: EgressConnection[];
  warnings: string[];
  /** Runner lines the host could not parse: none is expected. */
  invalid: string[];
  /** Every host message on stdin, in the order written. */
  sent: HostMessage[];
}

/** The lookup seam: test names to addresses, anything else as the resolver reports an unknown name. */
function seam(names: Record<string, string[]>): Lookup {
  return (name) => {
    const addresses = names[name];
    if (addresses) return Promise.resolve(addresses);
    return Promise.reject(Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' }));
  };
}

async function startLoop(options: LoopOptions): Promise<Loop> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-egress-loop-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const told: string[] = [];
  const records: EgressConnection[] = [];
  const warnings: string[] = [];
  const invalid: string[] = [];
  const sent: HostMessage[] = [];
  const limits: EgressLimits = { maxBytes: 1024 * MiB, maxConnections: 16, connectionTimeoutMs: 120_000, ...options.limits };
  const relay = new EgressRelay({
    allowlist: Allowlist.parse(options.allow),
    limits,
    budget: new EgressBudget(limits.maxBytes),
    clock: systemClock,
    // A copy: what events.jsonl gets is the record as it was when the connection was over.
    onConnection: (record) => records.push({ ...record }),
    onWarning: (message) => warnings.push(message),
    lookup: seam(options.names ?? {}),
  });

  const stdin = new PassThrough();
  relay.attach(stdin);
  const tap = new HostFrameReader(
    (message) => sent.push(message),
    () => {},
  );
  stdin.on('data', (chunk: Buffer) => tap.push(chunk));
  const host = new HostInput(options.wire ? stdin.pipe(options.wire) : stdin, dir, dir);

  // The runner's stdout: lines written now reach the host's splitter a tick later, in order, batched as a pipe would.
  const stdout = new PassThrough();
  const splitter = new LineSplitter(
    STDOUT_LINE_BYTES,
    (line) => {
      const parsed = parseProtocolLine(line);
      if (parsed.kind === 'invalid') invalid.push(`${parsed.reason}: ${parsed.line}`);
      else if (isNet(parsed.message)) relay.handle(parsed.message);
    },
    (dropped) => invalid.push(`a line of ${dropped} bytes`),
  );
  stdout.on('data', (chunk: Buffer) => splitter.push(chunk));
  let pending: string[] = [];
  const emit = (message: ProtocolMessage) => {
    pending.push(encodeMessage(message));
    if (pending.length > 1) return;
    setImmediate(() => {
      const batch = pending.join('');
      pending = [];
      stdout.write(batch);
    });
  };

  // The proxy builds its url from the port it was given, so port 0 would give a url nobody can use: pick one first.
  const proxyPort = await freePort();
  const proxy = await startEgressProxy({ port: proxyPort, currentStep: () => STEP, emit, host, tell: (text) => told.push(text) });
  expect(proxy.url).toBe(`http://127.0.0.1:${proxyPort}`);
  cleanups.push(async () => {
    relay.close();
    stdin.end();
    await proxy.close();
  });
  return { proxyPort, relay, stdin, told, records, warnings, invalid, sent };
}

/** The allowlist entries and seam for a test name served on 127.0.0.1:port (loopback is dialed only when named exactly). */
function target(name: string, port: number): Pick<LoopOptions, 'allow' | 'names'> {
  return { allow: [`${name}:${port}`, `127.0.0.1:${port}`], names: { [name]: ['127.0.0.1'] } };
}

interface TestServer {
  port: number;
  /** Sockets the server accepted, and how many of them have closed. */
  sockets: Socket[];
  closed: () => number;
}

async function listen(server: http.Server | net.Server): Promise<TestServer> {
  const sockets: Socket[] = [];
  let closed = 0;
  server.on('connection', (socket: Socket) => {
    sockets.push(socket);
    socket.on('close', () => (closed += 1));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as AddressInfo).port, sockets, closed: () => closed };
}

function httpServer(handler: (request: IncomingMessage, response: ServerResponse) => void): Promise<TestServer> {
  return listen(http.createServer(handler));
}

/** Answers each request with `body` (content-length set). */
function serveBody(body: Buffer): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    request.resume();
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    response.end(body);
  };
}

/** Hashes the request body and answers with its sha256 and length. */
function hashUpload(request: IncomingMessage, response: ServerResponse): void {
  const hash = createHash('sha256');
  let bytes = 0;
  request.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  request.on('end', () => response.end(JSON.stringify({ sha256: hash.digest('hex'), bytes })));
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Whether the whole message arrived (false when the connection was cut mid-body). */
  complete: boolean;
}

/** A plain HTTP request through the proxy, in absolute form, as a client with HTTP_PROXY sends it. */
function viaProxy(proxyPort: number, url: string, upload?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port: proxyPort,
        path: url,
        method: upload ? 'POST' : 'GET',
        agent: false,
        // As a proxy-aware client (curl, pip, npm) writes it: the Host of the target, not of the proxy.
        headers: { host: new URL(url).host, ...(upload ? { 'content-length': upload.length } : {}) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', () => {});
        response.on('close', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks), complete: response.complete }));
      },
    );
    request.on('error', reject);
    request.end(upload);
  });
}

interface Head {
  status: number;
  headers: Record<string, string>;
}

/**
 * A raw TCP client of the proxy that keeps every byte it reads, in order, so a test can wait for a header block, for
 * a count of bytes, or for the end. With `bytesPerSecond` it reads no faster than that (pausing the socket).
 */
class RawClient {
  ended = false;
  /** The code of the error that ended the connection (ECONNRESET for a reset), if one did. */
  error: string | undefined;
  /** The far end said it sends no more (a FIN), the connection may still be open our way. */
  remoteEnded = false;
  private chunks: Buffer[] = [];
  /** Bytes in `chunks`: read since the last header block. */
  private pending = 0;
  private readonly changed = new EventEmitter();
  private paced = { started: 0, bytes: 0 };

  private constructor(
    readonly socket: Socket,
    private bytesPerSecond: number | undefined,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.pending += chunk.length;
      this.paced.bytes += chunk.length;
      this.changed.emit('change');
      if (this.bytesPerSecond) {
        const due = this.paced.started + (this.paced.bytes / this.bytesPerSecond) * 1000;
        const ahead = due - Date.now();
        if (ahead > 1) {
          socket.pause();
          setTimeout(() => socket.resume(), ahead);
        }
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => (this.error = error.code ?? error.message));
    socket.on('end', () => {
      this.remoteEnded = true;
      this.changed.emit('change');
    });
    socket.on('close', () => {
      this.ended = true;
      this.changed.emit('change');
    });
  }

  /** `allowHalfOpen`: the client goes on sending after the far end's FIN, as a shell's `nc -N` peer would. */
  static async connect(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<RawClient> {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false });
    await once(socket, 'connect');
    const client = new RawClient(socket, undefined);
    cleanups.push(() => socket.destroy());
    return client;
  }

  /** Reads from now on no faster than `bytesPerSecond`. */
  pace(bytesPerSecond: number): void {
    this.bytesPerSecond = bytesPerSecond;
    this.paced = { started: Date.now(), bytes: 0 };
  }

  /** Opens a CONNECT tunnel and reads the proxy's answer. */
  async connectTo(authority: string): Promise<Head> {
    this.socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    return this.readHead();
  }

  /** The next header block (status line and headers) of what was read. */
  async readHead(): Promise<Head> {
    for (;;) {
      const bytes = Buffer.concat(this.chunks);
      const end = bytes.indexOf('\r\n\r\n');
      if (end !== -1) {
        this.chunks = [bytes.subarray(end + 4)];
        this.pending = bytes.length - end - 4;
        const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        return { status: Number(statusLine.split(' ')[1]), headers };
      }
      if (this.ended) throw new Error(`the connection ended before a header block: ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`);
      await once(this.changed, 'change');
    }
  }

  /** Everything after the last header block, once the connection is over. */
  async readToEnd(): Promise<Buffer> {
    while (!this.ended) await once(this.changed, 'change');
    return Buffer.concat(this.chunks);
  }

  async waitForRemoteEnd(): Promise<void> {
    while (!this.remoteEnded && !this.ended) await once(this.changed, 'change');
  }

  async waitForBytes(count: number): Promise<void> {
    while (this.pendingBytes() < count) {
      if (this.ended) throw new Error(`the connection ended after ${this.pendingBytes()} of ${count} bytes`);
      await once(this.changed, 'change');
    }
  }

  /** What was read since the last header block, so far. */
  peek(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Bytes read since the last header block. */
  pendingBytes(): number {
    return this.pending;
  }

  async write(bytes: Buffer | string): Promise<void> {
    if (!this.socket.write(bytes)) await once(this.socket, 'drain');
  }
}

function recordOf(loop: Loop, host: string): EgressConnection {
  const found = loop.records.filter((record) => record.host === host);
  expect(found).toHaveLength(1);
  return found[0] as EgressConnection;
}

/** Per channel, the host messages on stdin, and how many raw bytes its `net.data` frames carried. */
function channelTrace(sent: HostMessage[], id: string): { types: string[]; bytes: number } {
  const types: string[] = [];
  let bytes = 0;
  for (const message of sent) {
    if (!('id' in message) || message.id !== id) continue;
    types.push(message.type);
    if (message.type === 'net.data') bytes += message.bytes;
  }
  return { types, bytes };
}

describe('egress loop: the runner proxy and the host relay in one process', () => {
  it('forwards a plain HTTP GET and records the connection as allowed and closed', async () => {
    const server = await httpServer((request, response) => {
      response.writeHead(200, { 'content-type': 'text/plain', 'x-seen-path': request.url ?? '' });
      response.end(`hello from ${request.headers.host ?? '?'}`);
    });
    const loop = await startLoop(target('plain.test', server.port));

    const answer = await viaProxy(loop.proxyPort, `http://plain.test:${server.port}/x?y=1`);

    expect(answer.status).toBe(200);
    expect(answer.complete).toBe(true);
    expect(answer.headers['x-seen-path']).toBe('/x?y=1');
    expect(answer.body.toString()).toBe(`hello from plain.test:${server.port}`);
    await waitFor('the record', () => loop.records.length === 1);
    const record = recordOf(loop, 'plain.test');
    expect(record).toMatchObject({ step: STEP, port: server.port, via: 'http', method: 'GET', address: '127.0.0.1', allowed: true, outcome: 'closed', reason: null, status: null });
    expect(record.bytesIn).toBeGreaterThan(answer.body.length);
    expect(record.bytesOut).toBeGreaterThan(0);
    expect(record.endTime.getTime()).toBeGreaterThanOrEqual(record.startTime.getTime());
    expect(loop.told).toEqual([]);
    expect(loop.warnings).toEqual([]);
    expect(loop.invalid).toEqual([]);
  });

  it('sends the target of an absolute-form request as its Host, not the Host the client wrote (RFC 9112 §3.2.2)', async () => {
    const hosts: string[] = [];
    const server = await httpServer((request, response) => {
      hosts.push(request.headers.host ?? '');
      response.end('ok');
    });
    const loop = await startLoop(target('named.test', server.port));
    const client = await RawClient.connect(loop.proxyPort);

    // The allowlist judged named.test, and the server is told named.test, whatever Host the client wrote. (Inside a
    // CONNECT tunnel the client chooses its own Host and SNI: SECURITY.md says what an allowed name opens.)
    await client.write(`GET http://named.test:${server.port}/x HTTP/1.1\r\nHost: elsewhere.test\r\nConnection: close\r\n\r\n`);
    const head = await client.readHead();
    await client.readToEnd();

    expect(head.status).toBe(200);
    expect(hosts).toEqual([`named.test:${server.port}`]);
  });

  it('carries 20 MiB intact through a CONNECT tunnel', async () => {
    const body = randomBytes(20 * MiB);
    const server = await httpServer(serveBody(body));
    const loop = await startLoop(target('tunnel.test', server.port));
    const client = await RawClient.connect(loop.proxyPort);

    const head = await client.connectTo(`tunnel.test:${server.port}`);
    expect(head.status).toBe(200);
    await client.write(`GET /big HTTP/1.1\r\nHost: tunnel.test:${server.port}\r\nConnection: close\r\n\r\n`);
    const inner = await client.readHead();
    const rest = await client.readToEnd();

    expect(inner.status).toBe(200);
    expect(Number(inner.headers['content-length'])).toBe(body.length);
    expect(rest.length).toBe(body.length);
    expect(sha256(rest)).toBe(sha256(body));
    await waitFor('the record', () => loop.records.length === 1);
    const record = recordOf(loop, 'tunnel.test');
    expect(record).toMatchObject({ via: 'connect', method: null, address: '127.0.0.1', allowed: true, outcome: 'closed' });
    expect(record.bytesIn).toBeGreaterThan(body.length);
    expect(loop.invalid).toEqual([]);
  }, 60_000);

  describe('refusals', () => {
    it('answers 403 for a name not on the allowlist, with the reason in a header, the body and the step output', async () => {
      const loop = await startLoop({ allow: ['allowed.test:80'] });

      const answer = await viaProxy(loop.proxyPort, 'http://nope.test:8080/x');

      expect(answer.status).toBe(403);
      const reason = 'nope.test:8080 is not on the allowlist (--allow-host nope.test:8080)';
      expect(answer.headers['x-asp-egress-refused']).toBe(reason);
      expect(answer.body.toString()).toBe(`asp egress: ${reason}\n`);
      expect(loop.told).toEqual([`[asp: egress to nope.test:8080 refused: ${reason}]`]);
      await waitFor('the record', () => loop.records.length === 1);
      expect(recordOf(loop, 'nope.test')).toMatchObject({ allowed: false, outcome: 'refused', status: 403, reason, address: null, bytesIn: 0, bytesOut: 0 });

      // The same through CONNECT: the proxy's raw answer carries it too.
      const client = await RawClient.connect(loop.proxyPort);
      const head = await client.connectTo('nope.test:443');
      expect(head.status).toBe(403);
      expect(head.headers['x-asp-egress-refused']).toBe('nope.test:443 is not on the allowlist (--allow-host nope.test)');
      expect((await client.readToEnd()).toString()).toBe('asp egress: nope.test:443 is not on the allowlist (--allow-host nope.test)\n');
    });

    it('answers 403 for an IP literal the allowlist does not name', async () => {
      const loop = await startLoop({ allow: ['allowed.test:443', '198.51.100.8:443'] });
      const client = await RawClient.connect(loop.proxyPort);

      const head = await client.connectTo('198.51.100.7:443');

      expect(head.status).toBe(403);
      expect(head.headers['x-asp-egress-refused']).toContain('198.51.100.7:443 is an IP address not on the allowlist');
      await waitFor('the record', () => loop.records.length === 1);
      expect(recordOf(loop, '198.51.100.7')).toMatchObject({ allowed: false, outcome: 'refused', status: 403 });
    });

    it('answers 403 for an allowed name that resolves to a private address', async () => {
      const loop = await startLoop({ allow: ['inside.test:80'], names: { 'inside.test': ['10.0.0.1'] } });

      const answer = await viaProxy(loop.proxyPort, 'http://inside.test/');

      expect(answer.status).toBe(403);
      expect(answer.headers['x-asp-egress-refused']).toContain('inside.test resolves to 10.0.0.1 (private)');
      expect(answer.body.toString()).toMatch(/^asp egress: .*private/);
      expect(loop.told[0]).toMatch(/^\[asp: egress to inside\.test:80 refused: .*private/);
      await waitFor('the record', () => loop.records.length === 1);
      // Allowed by name, refused by address: never dialed.
      expect(recordOf(loop, 'inside.test')).toMatchObject({ allowed: true, outcome: 'refused', status: 403, address: null });
    });

    it('answers 502 for an allowed name that does not resolve', async () => {
      const loop = await startLoop({ allow: ['gone.test:443'] });
      const client = await RawClient.connect(loop.proxyPort);

      const head = await client.connectTo('gone.test:443');

      expect(head.status).toBe(502);
      expect(head.headers['x-asp-egress-refused']).toBe('cannot resolve gone.test: ENOTFOUND');
      await waitFor('the record', () => loop.records.length === 1);
      expect(recordOf(loop, 'gone.test')).toMatchObject({ allowed: true, outcome: 'failed', status: 502, reason: 'cannot resolve gone.test: ENOTFOUND' });
    });

    it('answers 502 with ECONNREFUSED for an allowed name whose port has no listener', async () => {
      const port = await freePort();
      const loop = await startLoop(target('closed.test', port));

      const answer = await viaProxy(loop.proxyPort, `http://closed.test:${port}/`);

      expect(answer.status).toBe(502);
      expect(answer.headers['x-asp-egress-refused']).toBe(`cannot connect to closed.test:${port} (127.0.0.1): ECONNREFUSED`);
      expect(loop.told).toEqual([`[asp: egress to closed.test:${port} refused: cannot connect to closed.test:${port} (127.0.0.1): ECONNREFUSED]`]);
      await waitFor('the record', () => loop.records.length === 1);
      expect(recordOf(loop, 'closed.test')).toMatchObject({ allowed: true, outcome: 'failed', status: 502, address: null });
    });
  });

  it('holds a download back to the pace of a slow reader, and it still arrives whole', async () => {
    const body = randomBytes(32 * MiB);
    let written = 0;
    const server = await httpServer((request, response) => {
      request.resume();
      response.writeHead(200, { 'content-length': body.length });
      let offset = 0;
      const more = () => {
        while (offset < body.length) {
          const piece = body.subarray(offset, offset + 64 * 1024);
          offset += piece.length;
          // Counted once the piece left the server's process (handed to its socket).
          const room = response.write(piece, () => (written += piece.length));
          if (!room) {
            response.once('drain', more);
            return;
          }
        }
        response.end();
      };
      more();
    });
    const loop = await startLoop(target('slow.test', server.port));
    let stdinHighest = 0;
    const sampler = setInterval(() => (stdinHighest = Math.max(stdinHighest, loop.stdin.readableLength + loop.stdin.writableLength)), 2);
    cleanups.push(() => clearInterval(sampler));
    const client = await RawClient.connect(loop.proxyPort);
    expect((await client.connectTo(`slow.test:${server.port}`)).status).toBe(200);
    await client.write(`GET /big HTTP/1.1\r\nHost: slow.test\r\nConnection: close\r\n\r\n`);
    client.pace(8 * MiB);

    await client.waitForBytes(8 * MiB);
    const writtenAtEight = written;
    const readAtEight = client.pendingBytes();
    const inKernel = kernelQueued([server.port, loop.proxyPort]);
    const stdinAtEight = loop.stdin.readableLength + loop.stdin.writableLength;

    // Without flow control the server would have written all 32 MiB in the second the client took to read 8. With it,
    // what the server wrote beyond what the client read sits in three places: the kernel's buffers on the two
    // loopback connections (server → relay, proxy → client: a send buffer of up to net.ipv4.tcp_wmem's 4 MiB each, and
    // what the receiving side took before its reader paused; about 9 MiB here), the channel's window (1 MiB in
    // flight, held in the proxy's channel buffer), and a few stream buffers of 16-256 KiB. 24 MiB leaves room for a
    // machine with larger socket buffers and is still well short of the whole body.
    expect(writtenAtEight).toBeGreaterThanOrEqual(readAtEight);
    expect(writtenAtEight).toBeLessThan(24 * MiB);
    // Where the kernel's share can be read, the loop's own share is bounded exactly: one window plus those stream
    // buffers (the proxy channel's 256 KiB, the sockets' 16-64 KiB, a frame on the way): under 2 MiB.
    if (inKernel !== undefined) expect(writtenAtEight - readAtEight - inKernel).toBeLessThan(NET_WINDOW_BYTES + MiB);
    expect(stdinAtEight).toBeLessThanOrEqual(STDIN_BOUND);

    const inner = await client.readHead();
    const rest = await client.readToEnd();
    expect(inner.status).toBe(200);
    expect(rest.length).toBe(body.length);
    expect(sha256(rest)).toBe(sha256(body));
    expect(stdinHighest).toBeLessThanOrEqual(STDIN_BOUND);
    expect(loop.warnings).toEqual([]);
  }, 60_000);

  describe('uploads', () => {
    it('carries an 8 MiB POST intact through plain HTTP forwarding', async () => {
      const upload = randomBytes(8 * MiB);
      const server = await httpServer(hashUpload);
      const loop = await startLoop(target('up.test', server.port));

      const answer = await viaProxy(loop.proxyPort, `http://up.test:${server.port}/upload`, upload);

      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body.toString())).toEqual({ sha256: sha256(upload), bytes: upload.length });
      await waitFor('the record', () => loop.records.length === 1);
      const record = recordOf(loop, 'up.test');
      expect(record).toMatchObject({ method: 'POST', outcome: 'closed' });
      expect(record.bytesOut).toBeGreaterThanOrEqual(upload.length);
      expect(loop.warnings).toEqual([]);
    }, 60_000);

    it('carries an 8 MiB POST intact through a CONNECT tunnel', async () => {
      const upload = randomBytes(8 * MiB);
      const server = await httpServer(hashUpload);
      const loop = await startLoop(target('up.test', server.port));
      const client = await RawClient.connect(loop.proxyPort);
      expect((await client.connectTo(`up.test:${server.port}`)).status).toBe(200);

      await client.write(`POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: ${upload.length}\r\nConnection: close\r\n\r\n`);
      for (let offset = 0; offset < upload.length; offset += 256 * 1024) await client.write(upload.subarray(offset, offset + 256 * 1024));
      const inner = await client.readHead();
      const rest = await client.readToEnd();

      expect(inner.status).toBe(200);
      expect(JSON.parse(rest.toString())).toEqual({ sha256: sha256(upload), bytes: upload.length });
      await waitFor('the record', () => loop.records.length === 1);
      expect(recordOf(loop, 'up.test').bytesOut).toBeGreaterThanOrEqual(upload.length);
      expect(loop.warnings).toEqual([]);
    }, 60_000);

    it('holds an upload back to the pace of a slow server: the runner never has more than its window unacknowledged', async () => {
      const upload = randomBytes(12 * MiB);
      const hash = createHash('sha256');
      let read = 0;
      const rate = 8 * MiB;
      // A server that reads no faster than 8 MiB/s, then answers with what it got.
      const server = await listen(
        net.createServer((socket) => {
          const started = Date.now();
          socket.on('data', (chunk: Buffer) => {
            hash.update(chunk);
            read += chunk.length;
            const ahead = started + (read / rate) * 1000 - Date.now();
            if (ahead > 1) {
              socket.pause();
              setTimeout(() => socket.resume(), ahead);
            }
            if (read === upload.length) socket.end(`${hash.digest('hex')}\n`);
          });
        }),
      );
      const loop = await startLoop(target('sink.test', server.port));
      const client = await RawClient.connect(loop.proxyPort);
      expect((await client.connectTo(`sink.test:${server.port}`)).status).toBe(200);

      for (let offset = 0; offset < upload.length; offset += 256 * 1024) await client.write(upload.subarray(offset, offset + 256 * 1024));
      const answer = await client.readToEnd();

      expect(answer.toString()).toBe(`${sha256(upload)}\n`);
      // A runner past its window would have had the relay cut the channel ("sent more than its window without waiting").
      expect(loop.warnings).toEqual([]);
      await waitFor('the record', () => loop.records.length === 1);
      expect(recordOf(loop, 'sink.test')).toMatchObject({ outcome: 'closed', bytesOut: upload.length });
    }, 60_000);
  });

  describe('caps', () => {
    it('cuts a download at the byte cap, tells the step, and refuses the next connection as spent', async () => {
      const body = randomBytes(4 * MiB);
      const server = await httpServer(serveBody(body));
      const loop = await startLoop({ ...target('big.test', server.port), limits: { maxBytes: MiB } });

      const answer = await viaProxy(loop.proxyPort, `http://big.test:${server.port}/big`);

      expect(answer.status).toBe(200);
      expect(answer.complete).toBe(false);
      expect(answer.body.length).toBeLessThan(MiB);
      expect(body.subarray(0, answer.body.length).equals(answer.body)).toBe(true);
      await waitFor('the record', () => loop.records.length === 1);
      const record = recordOf(loop, 'big.test');
      expect(record.outcome).toBe('cut');
      expect(record.reason).toBe("the task's egress byte cap of 1.0 MiB is reached (--egress-bytes)");
      expect(record.bytesIn + record.bytesOut).toBeLessThanOrEqual(MiB);
      expect(loop.told).toEqual([`[asp: egress connection to big.test:${server.port} cut: the task's egress byte cap of 1.0 MiB is reached (--egress-bytes)]`]);

      const next = await viaProxy(loop.proxyPort, `http://big.test:${server.port}/again`);
      expect(next.status).toBe(403);
      expect(next.headers['x-asp-egress-refused']).toBe("the task's egress byte cap of 1.0 MiB is spent (--egress-bytes)");
      await waitFor('the second record', () => loop.records.length === 2);
      expect(loop.records[1]).toMatchObject({ outcome: 'refused', status: 403 });
    }, 30_000);

    it('refuses a second tunnel while the connection cap of 1 is taken, and allows one once it is free', async () => {
      const server = await httpServer(serveBody(Buffer.from('ok')));
      const loop = await startLoop({ ...target('one.test', server.port), limits: { maxConnections: 1 } });
      const first = await RawClient.connect(loop.proxyPort);
      expect((await first.connectTo(`one.test:${server.port}`)).status).toBe(200);

      const second = await RawClient.connect(loop.proxyPort);
      const head = await second.connectTo(`one.test:${server.port}`);

      expect(head.status).toBe(403);
      expect(head.headers['x-asp-egress-refused']).toBe("1 connections are open already, the task's cap (--egress-connections)");
      first.socket.destroy();
      await waitFor('both records', () => loop.records.length === 2);
      const third = await RawClient.connect(loop.proxyPort);
      expect((await third.connectTo(`one.test:${server.port}`)).status).toBe(200);
    });

    it('cuts an idle tunnel at the connection timeout', async () => {
      const server = await httpServer(serveBody(Buffer.from('ok')));
      const loop = await startLoop({ ...target('idle.test', server.port), limits: { connectionTimeoutMs: 300 } });
      const client = await RawClient.connect(loop.proxyPort);
      expect((await client.connectTo(`idle.test:${server.port}`)).status).toBe(200);

      await client.readToEnd();

      await waitFor('the record', () => loop.records.length === 1);
      expect(recordOf(loop, 'idle.test')).toMatchObject({ outcome: 'cut', reason: 'it was open longer than 300ms (--egress-timeout)' });
      expect(loop.told).toEqual([`[asp: egress connection to idle.test:${server.port} cut: it was open longer than 300ms (--egress-timeout)]`]);
      await waitFor('the server to see the close', () => server.closed() === 1);
    });
  });

  describe('half-close and ordering behind a slow stdin', () => {
    /** The container's stdin as a slow wire: each chunk waits a few milliseconds before the runner reads it. */
    function slowWire(): Transform {
      return new Transform({
        highWaterMark: 16 * 1024,
        transform(chunk: Buffer, _encoding, callback) {
          setTimeout(() => callback(null, chunk), 3);
        },
      });
    }

    // Under one window: all of it is read from the server and queued in the relay before stdin took much of it, so
    // the server's end and close come while the bytes still wait. Over several windows: the relay pauses the server.
    for (const size of [900 * 1024, 6 * MiB]) {
      it(`delivers every byte of a ${size} B body before the end, through a tunnel to a server that writes and hangs up`, async () => {
        const body = randomBytes(size);
        const server = await listen(net.createServer((socket) => socket.end(body)));
        const loop = await startLoop({ ...target('half.test', server.port), wire: slowWire() });
        let stdinHighest = 0;
        const sampler = setInterval(() => (stdinHighest = Math.max(stdinHighest, loop.stdin.readableLength + loop.stdin.writableLength)), 1);
        cleanups.push(() => clearInterval(sampler));
        const client = await RawClient.connect(loop.proxyPort);
        expect((await client.connectTo(`half.test:${server.port}`)).status).toBe(200);

        const rest = await client.readToEnd();

        expect(rest.length).toBe(body.length);
        expect(sha256(rest)).toBe(sha256(body));
        await waitFor('the record', () => loop.records.length === 1);
        const record = recordOf(loop, 'half.test');
        expect(record).toMatchObject({ outcome: 'closed', bytesIn: body.length });
        const trace = channelTrace(loop.sent, record.id);
        expect(trace.bytes).toBe(body.length);
        // The server's end comes after the channel's last bytes, never before; so does a close, when the host sends
        // one (it need not: the runner may have closed the channel first, once its client hung up).
        const lastData = trace.types.lastIndexOf('net.data');
        expect(trace.types.indexOf('net.end')).toBeGreaterThan(lastData);
        expect(trace.types.slice(0, lastData)).not.toContain('net.end');
        expect(trace.types.slice(0, lastData)).not.toContain('net.close');
        expect(trace.types.filter((type) => type === 'net.close').length).toBeLessThanOrEqual(1);
        // The slow wire backs stdin up: the relay holds the rest (and the server) back rather than fill it.
        expect(stdinHighest).toBeGreaterThan(0);
        expect(stdinHighest).toBeLessThanOrEqual(STDIN_BOUND);
      }, 60_000);
    }

    it('delivers a whole plain HTTP answer whose server ends right after writing it', async () => {
      const body = randomBytes(3 * MiB);
      const server = await httpServer((request, response) => {
        request.resume();
        // No content-length: the body ends where the connection does, so a lost tail would go unnoticed by the parser.
        response.writeHead(200, { 'content-type': 'application/octet-stream', connection: 'close' });
        response.end(body);
      });
      const loop = await startLoop({ ...target('end.test', server.port), wire: slowWire() });

      const answer = await viaProxy(loop.proxyPort, `http://end.test:${server.port}/body`);

      expect(answer.status).toBe(200);
      expect(answer.body.length).toBe(body.length);
      expect(sha256(answer.body)).toBe(sha256(body));
      await waitFor('the record', () => loop.records.length === 1);
      const trace = channelTrace(loop.sent, recordOf(loop, 'end.test').id);
      const lastData = trace.types.lastIndexOf('net.data');
      expect(trace.bytes).toBeGreaterThan(body.length);
      expect(trace.types.indexOf('net.end')).toBeGreaterThan(lastData);
      expect(trace.types.slice(0, lastData)).not.toContain('net.end');
      expect(trace.types.slice(0, lastData)).not.toContain('net.close');
    }, 60_000);

    it('lets the step half-close its side and still read the whole answer', async () => {
      const body = randomBytes(2 * MiB);
      // A server that reads the request to its end (the client's FIN), then answers.
      const server = await listen(
        net.createServer({ allowHalfOpen: true }, (socket) => {
          let request = 0;
          socket.on('data', (chunk: Buffer) => (request += chunk.length));
          socket.on('end', () => socket.end(Buffer.concat([Buffer.from(`${request}\n`), body])));
        }),
      );
      const loop = await startLoop({ ...target('fin.test', server.port), wire: slowWire() });
      const client = await RawClient.connect(loop.proxyPort);
      expect((await client.connectTo(`fin.test:${server.port}`)).status).toBe(200);

      client.socket.end('the whole request');
      const rest = await client.readToEnd();

      expect(rest.subarray(0, rest.indexOf('\n')).toString()).toBe(String('the whole request'.length));
      expect(sha256(rest.subarray(rest.indexOf('\n') + 1))).toBe(sha256(body));
    }, 60_000);
  });

  it('lets the target half-close first and still carries what the step sends after (net.end is a half-close)', async () => {
    const upload = randomBytes(2 * MiB);
    const hash = createHash('sha256');
    let uploaded = 0;
    let uploadEnded = false;
    // A server that says its piece and shuts its sending side at once, then reads the client to the end.
    const server = await listen(
      net.createServer({ allowHalfOpen: true }, (socket) => {
        socket.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          uploaded += chunk.length;
        });
        socket.on('end', () => (uploadEnded = true));
        socket.end('send me the file\n');
      }),
    );
    const loop = await startLoop(target('first.test', server.port));
    const client = await RawClient.connect(loop.proxyPort, { allowHalfOpen: true });
    expect((await client.connectTo(`first.test:${server.port}`)).status).toBe(200);

    await client.waitForRemoteEnd();
    expect(client.peek().toString()).toBe('send me the file\n');
    expect(client.ended).toBe(false);
    client.socket.end(upload);
    await waitFor('the server to read the upload to its end', () => uploadEnded, 10_000);

    expect(uploaded).toBe(upload.length);
    expect(hash.digest('hex')).toBe(sha256(upload));
  }, 30_000);

  describe('a hostile runner, fed to the relay directly', () => {
    function bareRelay(options: { allow: string[]; lookup: Lookup; stdin?: Writable }): { relay: EgressRelay; sent: HostMessage[]; records: EgressConnection[]; warnings: string[] } {
      const sent: HostMessage[] = [];
      const records: EgressConnection[] = [];
      const warnings: string[] = [];
      const relay = new EgressRelay({
        allowlist: Allowlist.parse(options.allow),
        limits: { maxBytes: 1024 * MiB, maxConnections: 16, connectionTimeoutMs: 120_000 },
        budget: new EgressBudget(1024 * MiB),
        clock: systemClock,
        onConnection: (record) => records.push({ ...record }),
        onWarning: (message) => warnings.push(message),
        lookup: options.lookup,
      });
      const stdin = options.stdin ?? new PassThrough();
      const reader = new HostFrameReader(
        (message) => sent.push(message),
        () => {},
      );
      if (stdin instanceof PassThrough) stdin.on('data', (chunk: Buffer) => reader.push(chunk));
      relay.attach(stdin);
      cleanups.push(() => {
        relay.close();
        stdin.end();
      });
      return { relay, sent, records, warnings };
    }

    /** A container stdin nobody reads: every write stays buffered (a runner that stopped reading). */
    function unreadStdin(): Writable {
      return new Writable({ highWaterMark: 64 * 1024, write: () => {} });
    }

    it('takes no ack for bytes it never wrote, and holds a remote back while its bytes wait unread', async () => {
      let written = 0;
      const block = Buffer.alloc(MiB, 1);
      const server = await listen(
        net.createServer((socket) => {
          socket.on('error', () => {});
          const more = () => {
            while (!socket.destroyed && socket.write(block, () => (written += block.length)));
            if (!socket.destroyed) socket.once('drain', more);
          };
          more();
        }),
      );
      const { relay, records, warnings } = bareRelay({ allow: [`127.0.0.1:${server.port}`], lookup: seam({}), stdin: unreadStdin() });
      relay.handle({ type: 'net.open', id: 'c1', step: STEP, host: '127.0.0.1', port: server.port, via: 'connect' });
      await sleep(500);
      // One window in the relay, and the kernel's socket buffers of one loopback connection: far from all of it.
      expect(written).toBeLessThan(16 * MiB);
      const held = written;
      // A runner that acks what it never got, to make the remote go on:
      relay.handle({ type: 'net.ack', id: 'c1', bytes: NET_WINDOW_BYTES });
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(new RegExp(`^egress: the sandbox's channel c1 acknowledged ${NET_WINDOW_BYTES} bytes of \\d+ sent; closed$`));
      expect(records).toMatchObject([{ id: 'c1', outcome: 'cut' }]);
      await sleep(300);
      expect(written - held).toBeLessThan(8 * MiB);
      await waitFor('the server to see the close', () => server.closed() === 1);
    }, 30_000);

    it('a runner that floods opens and reads nothing: egress stops at a bounded backlog, with one warning', () => {
      const { relay, records, warnings } = bareRelay({ allow: ['allowed.test'], lookup: seam({}), stdin: unreadStdin() });
      const open = (index: number) => relay.handle({ type: 'net.open', id: `c${index}`, step: STEP, host: 'refused.test', port: 443, via: 'connect' });
      for (let index = 0; index < 200_000; index += 1) open(index);
      // Whichever bound comes first (the backlog of refusals nobody reads, or the count of opens), one warning says so.
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/^egress: the sandbox (left more than 16 MiB of its stdin unread; egress stopped|asked for more than 100000 connections; no more are answered)$/);
      const recorded = records.length;
      expect(recorded).toBeGreaterThan(50_000);
      expect(recorded).toBeLessThanOrEqual(100_000);
      expect(records.every((record) => record.outcome === 'refused')).toBe(true);
      for (let index = 200_000; index < 200_100; index += 1) open(index);
      expect(records).toHaveLength(recorded);
    });

    it('a runner whose stdin holds 16 MiB it never read gets no more answers: egress stops, with one warning', () => {
      const stdin = unreadStdin();
      stdin.write(Buffer.alloc(16 * MiB + 1));
      const { relay, records, warnings } = bareRelay({ allow: ['allowed.test'], lookup: seam({}), stdin });
      relay.handle({ type: 'net.open', id: 'c1', step: STEP, host: 'refused.test', port: 443, via: 'connect' });
      relay.handle({ type: 'net.open', id: 'c2', step: STEP, host: 'refused.test', port: 443, via: 'connect' });
      expect(warnings).toEqual(['egress: the sandbox left more than 16 MiB of its stdin unread; egress stopped']);
      expect(records.map((record) => record.id)).toEqual(['c1']);
      expect(stdin.writableLength).toBe(16 * MiB + 1);
    });

    it('a host the proxy would never send (an IPv6 zone, odd characters) is refused, never thrown', async () => {
      const { relay, records, warnings } = bareRelay({ allow: ['[fe80::2]:443'], lookup: seam({}) });
      for (const host of ['fe80::1%eth0', '[fe80::1]', 'ghp_secret.example', '127.1', '']) relay.handle({ type: 'net.open', id: `c-${host}`, step: STEP, host, port: 443, via: 'connect' });
      await sleep(50);
      expect(warnings).toEqual([]);
      expect(records.map((record) => record.outcome)).toEqual(['refused', 'refused', 'refused', 'refused', 'refused']);
    });

    it('ignores bytes for an unknown channel, warns of a channel opened twice, cuts one that sends before it is open', async () => {
      let answer: (addresses: string[]) => void = () => {};
      const slowLookup: Lookup = () => new Promise((resolve) => (answer = resolve));
      const server = await httpServer(serveBody(Buffer.from('ok')));
      const { relay, sent, records, warnings } = bareRelay({ allow: [`slow.test:${server.port}`, `127.0.0.1:${server.port}`], lookup: slowLookup });
      const open = (id: string, host: string): NetSandboxMessage => ({ type: 'net.open', id, step: STEP, host, port: server.port, via: 'connect' });

      expect(() => relay.handle({ type: 'net.data', id: 'ghost', data: Buffer.from('hi').toString('base64') })).not.toThrow();
      expect(() => relay.handle({ type: 'net.ack', id: 'ghost', bytes: 5 })).not.toThrow();
      expect(() => relay.handle({ type: 'net.end', id: 'ghost' })).not.toThrow();
      expect(() => relay.handle({ type: 'net.close', id: 'ghost' })).not.toThrow();
      expect(sent).toEqual([]);
      expect(records).toEqual([]);

      relay.handle(open('c1', 'slow.test'));
      relay.handle(open('c1', 'slow.test'));
      expect(warnings).toEqual(['egress: the sandbox opened channel c1 twice; ignored']);

      // c1 waits for its lookup: bytes now come before the host said it was open.
      relay.handle({ type: 'net.data', id: 'c1', data: Buffer.from('too early').toString('base64') });
      expect(warnings[1]).toBe("egress: the sandbox's channel c1 sent bytes before the connection was open; closed");
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ id: 'c1', outcome: 'cut', reason: 'the sandbox sent bytes before the connection was open' });
      await waitFor('the close on stdin', () => sent.length === 1);
      expect(sent).toEqual([{ type: 'net.close', id: 'c1', reason: 'the sandbox sent bytes before the connection was open' }]);

      // The lookup answers late: the channel is over, nothing is dialed and nothing more is said of it.
      answer(['127.0.0.1']);
      await sleep(100);
      expect(server.sockets).toHaveLength(0);
      expect(sent).toHaveLength(1);
      expect(records).toHaveLength(1);
    });

    it('says nothing more of a channel it cut while the name was resolving, even when the lookup then fails', async () => {
      let fail: (error: Error) => void = () => {};
      const { relay, sent, records } = bareRelay({ allow: ['late.test:443'], lookup: () => new Promise((_resolve, reject) => (fail = reject)) });
      relay.handle({ type: 'net.open', id: 'c1', step: STEP, host: 'late.test', port: 443, via: 'connect' });
      relay.handle({ type: 'net.data', id: 'c1', data: Buffer.from('too early').toString('base64') });
      await waitFor('the close on stdin', () => sent.length === 1);

      fail(Object.assign(new Error('getaddrinfo ENOTFOUND late.test'), { code: 'ENOTFOUND' }));
      await sleep(50);

      // The channel was over with its net.close: a net.refused after it answers an open the runner no longer has.
      expect(sent).toEqual([{ type: 'net.close', id: 'c1', reason: 'the sandbox sent bytes before the connection was open' }]);
      expect(records).toHaveLength(1);
    });

    it('cuts a channel whose runner sends far past its window without waiting for acks', async () => {
      // A target that never reads: what is sent piles up in the relay's socket.
      const server = await listen(net.createServer((socket) => socket.pause()));
      const { relay, sent, records, warnings } = bareRelay({ allow: [`127.0.0.1:${server.port}`], lookup: seam({}) });
      relay.handle({ type: 'net.open', id: 'c1', step: STEP, host: '127.0.0.1', port: server.port, via: 'connect' });
      await waitFor('net.opened', () => sent.some((message) => message.type === 'net.opened'));

      const chunk = randomBytes(NET_CHUNK_BYTES).toString('base64');
      for (let index = 0; index < 1024 && !records.length; index += 1) {
        expect(() => relay.handle({ type: 'net.data', id: 'c1', data: chunk })).not.toThrow();
        if (index % 16 === 15) await sleep(1);
      }

      expect(warnings).toEqual(["egress: the sandbox's channel c1 sent more than its window without waiting; closed"]);
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ outcome: 'cut', reason: 'the sandbox sent more than its window without waiting' });
      expect(sent.filter((message) => message.type === 'net.close')).toEqual([{ type: 'net.close', id: 'c1', reason: 'the sandbox sent more than its window without waiting' }]);
      // The relay hung up on the target: once it reads what its kernel holds, it sees the end.
      for (const socket of server.sockets) socket.resume();
      await waitFor('the server to see the close', () => server.closed() === 1);
    }, 30_000);

    it('ends every open connection with one record on close, including one still resolving', async () => {
      let answer: (addresses: string[]) => void = () => {};
      const server = await httpServer(serveBody(Buffer.from('ok')));
      const lookup: Lookup = (name) => (name === 'pending.test' ? new Promise((resolve) => (answer = resolve)) : Promise.resolve(['127.0.0.1']));
      const { relay, sent, records } = bareRelay({ allow: [`a.test:${server.port}`, `b.test:${server.port}`, `pending.test:${server.port}`, `127.0.0.1:${server.port}`], lookup });
      for (const [id, host] of [
        ['c1', 'a.test'],
        ['c2', 'b.test'],
        ['c3', 'pending.test'],
      ] as const)
        relay.handle({ type: 'net.open', id, step: STEP, host, port: server.port, via: 'connect' });
      await waitFor('two opened', () => sent.filter((message) => message.type === 'net.opened').length === 2);
      await waitFor('two server sockets', () => server.sockets.length === 2);

      relay.close();
      relay.close();

      expect(records.map((record) => record.id).sort()).toEqual(['c1', 'c2', 'c3']);
      for (const record of records) expect(record).toMatchObject({ allowed: true, outcome: 'closed', reason: 'the sandbox stopped' });
      await waitFor('the server to see both close', () => server.closed() === 2);
      answer(['127.0.0.1']);
      await sleep(100);
      expect(server.sockets).toHaveLength(2);
      expect(records).toHaveLength(3);
      // Messages after close are ignored, not thrown on.
      expect(() => relay.handle({ type: 'net.open', id: 'c4', step: STEP, host: 'a.test', port: server.port, via: 'connect' })).not.toThrow();
      await sleep(50);
      expect(records).toHaveLength(3);
    });
  });

  it('a remote that resets mid-download resets the client too: a cut body never looks complete', async () => {
    const server = await listen(
      net.createServer((socket) => {
        socket.once('data', () => {
          // A close-delimited body: only a reset, not the end, says it is incomplete.
          socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n');
          socket.write(randomBytes(256 * 1024), () => setTimeout(() => socket.resetAndDestroy(), 50));
        });
        socket.on('error', () => {});
      }),
    );
    const loop = await startLoop(target('reset.test', server.port));
    const client = await RawClient.connect(loop.proxyPort);
    expect((await client.connectTo(`reset.test:${server.port}`)).status).toBe(200);
    await client.write('GET /x HTTP/1.1\r\nHost: reset.test\r\n\r\n');
    await client.readToEnd();
    expect(client.error).toBe('ECONNRESET');
    await waitFor('the record', () => loop.records.length === 1);
    expect(loop.records[0]).toMatchObject({ outcome: 'failed', reason: 'the connection failed: ECONNRESET' });
    expect(loop.told).toEqual([`[asp: egress connection to reset.test:${server.port} cut: the connection failed: ECONNRESET]`]);
  }, 30_000);

  it('on relay.close() during a download destroys the server socket and writes the record once', async () => {
    const chunk = randomBytes(64 * 1024);
    const server = await httpServer((request, response) => {
      request.resume();
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      // Endless: the download is over only when someone ends it.
      const more = () => {
        while (!response.destroyed && response.write(chunk));
        if (!response.destroyed) response.once('drain', more);
      };
      more();
    });
    const loop = await startLoop(target('endless.test', server.port));
    const client = await RawClient.connect(loop.proxyPort);
    expect((await client.connectTo(`endless.test:${server.port}`)).status).toBe(200);
    await client.write(`GET /endless HTTP/1.1\r\nHost: endless.test\r\n\r\n`);
    await client.waitForBytes(2 * MiB);
    expect(server.closed()).toBe(0);

    loop.relay.close();

    await waitFor('the server to see the close', () => server.closed() === 1);
    expect(loop.records).toHaveLength(1);
    expect(loop.records[0]).toMatchObject({ host: 'endless.test', outcome: 'closed', reason: 'the sandbox stopped' });
    expect(loop.records[0]?.bytesIn).toBeGreaterThanOrEqual(2 * MiB);
    loop.relay.close();
    await sleep(200);
    expect(loop.records).toHaveLength(1);
    // The session then ends the container's stdin: the runner hangs up on the step's client.
    loop.stdin.end();
    await client.readToEnd();
    expect(client.ended).toBe(true);
  }, 30_000);
});
