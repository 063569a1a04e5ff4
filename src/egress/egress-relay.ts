/**
 * The host's side of a sandbox's egress channels (messages.ts, NetOpenMessage): for each connection a step opened
 * through the runner's loopback proxy, decide, resolve, dial, relay and record. The decision is all here, on the
 * host: the name must be on the allowlist, an IP literal must be named exactly, and every address a name resolves
 * to is checked (address-policy.ts) before it is dialed — the address checked is the address dialed, so a name that
 * changes its answer between two lookups gains nothing. The task's caps (bytes both ways, concurrent connections,
 * each connection's lifetime) are enforced here too, and every connection ends as one record.
 */
import { lookup } from 'node:dns/promises';
import { connect, type Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { formatBytes, formatDuration } from '../config/units.js';
import { errorMessage, systemErrorCode } from '../core/asp-error.js';
import type { Clock } from '../core/clock.js';
import { encodeHostMessage, type HostMessage } from '../protocol/host-messages.js';
import { NET_WINDOW_BYTES, type NetOpenMessage, type NetSandboxMessage } from '../protocol/messages.js';
import { NEVER_DIALED, refusedAddressKind } from './address-policy.js';
import { canonicalAddress, formatHostPort, type Allowlist } from '../config/allowlist.js';

/** How long a name may take to resolve, and one address to accept the connection. */
const LOOKUP_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;
/** Most channels one sandbox may have asked for in all (each open is a record; a loop of them is a bug or an attack). */
const MAX_CHANNELS_PER_SESSION = 100_000;
/** Name lookups of one sandbox running at once (getaddrinfo holds a thread of libuv's small pool while it runs). */
const MAX_LOOKUPS = 8;
/**
 * What the host may have written to the sandbox's stdin that it has not read. Past this the runner is not reading:
 * egress stops, rather than the supervisor buffering for it (the queue of remote bytes is bounded by the windows).
 */
const MAX_STDIN_BACKLOG = 16 * 1024 * 1024;
/** Most bytes of one channel sent as one `net.data` frame when they waited together. */
const MAX_FRAME_PIECES = 1024 * 1024;

export interface EgressLimits {
  /** Bytes both ways, all connections of the task together (`--egress-bytes`). */
  maxBytes: number;
  /** Connections open at once (`--egress-connections`). */
  maxConnections: number;
  /** How long one connection may stay open (`--egress-timeout`). */
  connectionTimeoutMs: number;
}

/** One connection, as events.jsonl and the trace keep it. */
export interface EgressConnection {
  id: string;
  step: string;
  host: string;
  port: number;
  via: 'connect' | 'http';
  method: string | null;
  /** The address dialed, once there was one. */
  address: string | null;
  allowed: boolean;
  /** refused: never dialed; failed: dialed, no connection; cut: asp ended it (a cap); closed: it ended by itself. */
  outcome: 'refused' | 'failed' | 'cut' | 'closed';
  /** Why it was refused, failed or cut. */
  reason: string | null;
  /** What the proxy answered the client when it did not connect (403, 502, 504). */
  status: number | null;
  /** From the remote end to the sandbox, and from the sandbox to it. */
  bytesIn: number;
  bytesOut: number;
  startTime: Date;
  endTime: Date;
}

/** What a task's egress came to, for its result and summary line. */
export interface EgressSummary {
  connections: number;
  refused: number;
  bytesIn: number;
  bytesOut: number;
}

/** The byte cap of one task, shared by its sandboxes (the steps' and the clean-room check's). */
export class EgressBudget {
  private used = 0;
  readonly summary: EgressSummary = { connections: 0, refused: 0, bytesIn: 0, bytesOut: 0 };

  constructor(readonly maxBytes: number) {}

  /** Counts `bytes`; false once the cap is passed (the bytes that passed it are not sent). */
  take(bytes: number): boolean {
    if (this.used + bytes > this.maxBytes) {
      this.used = this.maxBytes;
      return false;
    }
    this.used += bytes;
    return true;
  }

  get spent(): boolean {
    return this.used >= this.maxBytes;
  }
}

export type Lookup = (name: string) => Promise<string[]>;

interface Channel {
  record: EgressConnection;
  socket: Socket | undefined;
  /** Remote bytes in the relay's queue, not yet written to stdin. */
  queued: number;
  /** Bytes written to stdin and not yet acknowledged: an ack can take back no more than this. */
  unacked: number;
  paused: boolean;
  timer: NodeJS.Timeout | undefined;
  done: boolean;
  /** Ended without telling the runner (it closed the channel itself): what is still queued for it is dropped. */
  dropped: boolean;
}

export interface EgressRelayOptions {
  allowlist: Allowlist;
  limits: EgressLimits;
  budget: EgressBudget;
  clock: Clock;
  /** Every connection, once it is over. */
  onConnection: (connection: EgressConnection) => void;
  /** A protocol fault of the runner's (an unknown channel, too many bytes unacknowledged). */
  onWarning: (message: string) => void;
  /** Test seam: how a name resolves (default: the host's resolver, every address). */
  lookup?: Lookup | undefined;
}

export class EgressRelay {
  private stdin: Writable | undefined;
  private readonly channels = new Map<string, Channel>();
  /** Remote bytes waiting for stdin to drain, in the order they came. */
  private readonly queue: Array<{ id: string; channel: Channel; bytes: Buffer } | { id: string; message: HostMessage }> = [];
  private opened = 0;
  private lookups = 0;
  private closed = false;
  private readonly lookup: Lookup;

  constructor(private readonly options: EgressRelayOptions) {
    this.lookup = options.lookup ?? (async (name) => (await lookup(name, { all: true, verbatim: true })).map((entry) => entry.address));
  }

  /** The sandbox's stdin, once the session opened it. */
  attach(stdin: Writable): void {
    this.stdin = stdin;
    stdin.on('drain', () => this.pump());
  }

  handle(message: NetSandboxMessage): void {
    if (this.closed) return;
    if (message.type === 'net.open') {
      this.open(message).catch((error: unknown) => this.options.onWarning(`egress: channel ${message.id} failed on the host: ${errorMessage(error)}`));
      return;
    }
    const channel = this.channels.get(message.id);
    if (!channel) return;
    switch (message.type) {
      case 'net.data': {
        const bytes = Buffer.from(message.data, 'base64');
        const socket = channel.socket;
        if (!socket) return this.fault(channel, 'sent bytes before the connection was open');
        // Base64 of nothing ("="): nothing to pass on, and no ack for it.
        if (!bytes.length) return;
        if (!this.options.budget.take(bytes.length)) return this.capSpent();
        channel.record.bytesOut += bytes.length;
        this.options.budget.summary.bytesOut += bytes.length;
        // The runner may have one window unacknowledged; more means it does not wait for acks.
        if (socket.writableLength > 2 * NET_WINDOW_BYTES) return this.fault(channel, 'sent more than its window without waiting');
        socket.write(bytes, () => this.send({ type: 'net.ack', id: message.id, bytes: bytes.length }));
        return;
      }
      case 'net.ack':
        // Acks for bytes never written would let the remote run on while nothing reads: a fault, not a credit.
        if (message.bytes > channel.unacked) return this.fault(channel, `acknowledged ${message.bytes} bytes of ${channel.unacked} sent`);
        channel.unacked -= message.bytes;
        this.resumeIfRoom(channel);
        return;
      case 'net.end':
        channel.socket?.end();
        return;
      case 'net.close':
        // The client hung up (or the proxy did): nothing to tell the runner.
        this.finish(channel, 'closed', null, false);
        return;
    }
  }

  /** The session is over: every connection still open ends, and so does the relay. */
  close(): void {
    this.closed = true;
    for (const channel of [...this.channels.values()]) this.finish(channel, 'closed', 'the sandbox stopped', false);
    this.queue.length = 0;
  }

  /** Held back while a window of its bytes is queued or unacknowledged; resumed once there is room again. */
  private resumeIfRoom(channel: Channel): void {
    if (channel.paused && channel.queued + channel.unacked < NET_WINDOW_BYTES && !channel.done) {
      channel.paused = false;
      channel.socket?.resume();
    }
  }

  private async open(message: NetOpenMessage): Promise<void> {
    const { limits, budget, allowlist } = this.options;
    const record: EgressConnection = {
      id: message.id,
      step: message.step,
      // As the sandbox wrote it: the task's secrets are masked in what is recorded, and a lower-cased copy of a
      // token would escape the mask. The allowlist compares names case-blind.
      host: message.host,
      port: message.port,
      via: message.via,
      method: message.method ?? null,
      address: null,
      allowed: false,
      outcome: 'refused',
      reason: null,
      status: null,
      bytesIn: 0,
      bytesOut: 0,
      startTime: this.options.clock.now(),
      endTime: this.options.clock.now(),
    };
    if (this.channels.has(message.id)) return this.options.onWarning(`egress: the sandbox opened channel ${message.id} twice; ignored`);
    const channel: Channel = { record, socket: undefined, queued: 0, unacked: 0, paused: false, timer: undefined, done: false, dropped: false };
    this.opened += 1;
    if (this.opened > MAX_CHANNELS_PER_SESSION) {
      // Past this a sandbox is flooding: one warning, then its opens go unanswered and unrecorded.
      if (this.opened === MAX_CHANNELS_PER_SESSION + 1) this.options.onWarning(`egress: the sandbox asked for more than ${MAX_CHANNELS_PER_SESSION} connections; no more are answered`);
      return;
    }
    const target = formatHostPort(record.host, record.port);
    if (budget.spent) return this.refuse(channel, 403, `the task's egress byte cap of ${formatBytes(budget.maxBytes)} is spent (--egress-bytes)`, false);
    if (this.channels.size >= limits.maxConnections) return this.refuse(channel, 403, `${limits.maxConnections} connections are open already, the task's cap (--egress-connections)`, false);
    const match = allowlist.match(record.host, record.port);
    if (!match.allowed) return this.refuse(channel, 403, match.reason, false);
    record.allowed = true;
    this.channels.set(message.id, channel);

    let addresses: string[];
    const literal = canonicalAddress(record.host);
    if (literal) addresses = [literal];
    else {
      if (this.lookups >= MAX_LOOKUPS) return this.refuse(channel, 502, `${MAX_LOOKUPS} name lookups are running already; try again`, true);
      // Counted until the lookup itself ends, not until its timeout: the resolver's thread is busy that long.
      this.lookups += 1;
      const lookingUp = this.lookup(record.host);
      lookingUp.then(
        () => (this.lookups -= 1),
        () => (this.lookups -= 1),
      );
      try {
        addresses = await withTimeout(lookingUp, LOOKUP_TIMEOUT_MS, `no answer in ${LOOKUP_TIMEOUT_MS / 1000} s`);
      } catch (error) {
        return this.refuse(channel, 502, `cannot resolve ${record.host}: ${systemErrorCode(error) ?? errorMessage(error)}`, true);
      }
    }
    if (!addresses.length) return this.refuse(channel, 502, `cannot resolve ${record.host}: no address`, true);
    // An address asp would not dial is skipped; one the allowlist names exactly (a private registry) is not refused.
    const permitted = addresses.filter((address) => {
      const kind = refusedAddressKind(address);
      return !kind || (allowlist.namesAddress(address, record.port) && !NEVER_DIALED.has(kind));
    });
    if (!permitted.length) {
      const first = addresses[0] ?? '';
      const kind = refusedAddressKind(first) ?? 'no address';
      const reason = NEVER_DIALED.has(kind)
        ? `${target} is ${kind === 'unspecified' ? 'an unspecified' : 'a multicast or reserved'} address (${first}): asp never dials one`
        : literal
          ? `${target} is a ${kind} address`
          : `${record.host} resolves to ${first} (${kind}): asp dials no ${kind} address unless it is allowed exactly (--allow-host ${formatHostPort(first, record.port)})`;
      return this.refuse(channel, 403, reason, true);
    }
    let socket: Socket | undefined;
    let lastError = '';
    for (const address of permitted) {
      if (channel.done) return;
      try {
        socket = await dial(address, record.port);
        record.address = address;
        break;
      } catch (error) {
        lastError = systemErrorCode(error) ?? errorMessage(error);
      }
    }
    // The client hung up, or the session ended, while the host was dialing.
    if (channel.done) {
      socket?.destroy();
      return;
    }
    if (!socket) return this.refuse(channel, lastError === 'ETIMEDOUT' ? 504 : 502, `cannot connect to ${target} (${permitted.join(', ')}): ${lastError}`, true);
    this.wire(channel, socket);
  }

  private wire(channel: Channel, socket: Socket): void {
    const { id } = channel.record;
    channel.socket = socket;
    socket.setNoDelay(true);
    const { limits, budget } = this.options;
    channel.timer = setTimeout(() => this.cut(channel, `it was open longer than ${formatDuration(limits.connectionTimeoutMs)} (--egress-timeout)`), Math.min(limits.connectionTimeoutMs, 2 ** 31 - 1));
    channel.timer.unref();
    socket.on('data', (bytes: Buffer) => {
      if (channel.done) return;
      if (!budget.take(bytes.length)) return this.capSpent();
      channel.record.bytesIn += bytes.length;
      budget.summary.bytesIn += bytes.length;
      channel.queued += bytes.length;
      this.queue.push({ id, channel, bytes });
      this.pump();
      // The sandbox reads no faster than its client: hold the remote end back while a window is queued or unread.
      if (channel.queued + channel.unacked >= NET_WINDOW_BYTES && !channel.paused) {
        channel.paused = true;
        socket.pause();
      }
    });
    socket.on('end', () => {
      if (!channel.done) this.send({ type: 'net.end', id });
    });
    let failure: string | null = null;
    socket.on('error', (error: NodeJS.ErrnoException) => (failure = error.code ?? error.message));
    socket.on('close', () => {
      if (channel.done) return;
      // Bytes still queued for the sandbox go first; the close follows them. A failure (a reset) is said, so the
      // client sees an error, not an end.
      this.finish(channel, failure ? 'failed' : 'closed', failure ? `the connection failed: ${failure}` : null, true);
    });
    this.send({ type: 'net.opened', id });
  }

  /** Writes what is queued (remote bytes, and the ends that follow them) while stdin takes it; the rest waits for its drain. */
  private pump(): void {
    const stdin = this.stdin;
    if (!stdin) return;
    while (this.queue.length) {
      if (stdin.destroyed || !stdin.writable) {
        this.queue.length = 0;
        return;
      }
      if (stdin.writableNeedDrain) return;
      const next = this.queue.shift();
      if (!next) return;
      if ('message' in next) {
        stdin.write(encodeHostMessage(next.message));
        continue;
      }
      const channel = next.channel;
      // A channel the runner closed meanwhile (or the session ended): its bytes go nowhere.
      if (channel.dropped) continue;
      // Pieces of one channel that waited side by side go as one frame: fewer lines for the runner to parse.
      const pieces = [next.bytes];
      let size = next.bytes.length;
      for (let head = this.queue[0]; head && 'bytes' in head && head.id === next.id && size + head.bytes.length <= MAX_FRAME_PIECES; head = this.queue[0]) {
        pieces.push(head.bytes);
        size += head.bytes.length;
        this.queue.shift();
      }
      // The line and its bytes in one writev.
      stdin.cork();
      stdin.write(encodeHostMessage({ type: 'net.data', id: next.id, bytes: size }));
      for (const piece of pieces) stdin.write(piece);
      stdin.uncork();
      channel.queued -= size;
      channel.unacked += size;
    }
  }

  /** A message to the runner, at once; a channel's end or close only after its bytes still queued. */
  private send(message: HostMessage): void {
    const stdin = this.stdin;
    if (!stdin || stdin.destroyed || !stdin.writable) return;
    if (stdin.writableLength > MAX_STDIN_BACKLOG) return this.stopUnread();
    if ((message.type === 'net.close' || message.type === 'net.end') && this.queue.some((entry) => entry.id === message.id)) {
      this.queue.push({ id: message.id, message });
      return;
    }
    stdin.write(encodeHostMessage(message));
  }

  /** The runner does not read what it is sent: every connection ends, and the relay answers nothing more. */
  private stopUnread(): void {
    if (this.closed) return;
    this.options.onWarning(`egress: the sandbox left more than ${MAX_STDIN_BACKLOG / 1024 / 1024} MiB of its stdin unread; egress stopped`);
    this.close();
  }

  private refuse(channel: Channel, status: number, reason: string, dialing: boolean): void {
    // Ended while the host was resolving or dialing (the client hung up, a cap, the session): already told and recorded.
    if (channel.done) return;
    channel.record.status = status;
    this.send({ type: 'net.refused', id: channel.record.id, status, reason });
    this.finish(channel, dialing && status !== 403 ? 'failed' : 'refused', reason, false);
  }

  /** asp ends a connection (a cap): the runner tells the step why. */
  private cut(channel: Channel, reason: string): void {
    this.finish(channel, 'cut', reason, true);
  }

  private capSpent(): void {
    const reason = `the task's egress byte cap of ${formatBytes(this.options.budget.maxBytes)} is reached (--egress-bytes)`;
    for (const channel of [...this.channels.values()]) if (channel.socket) this.cut(channel, reason);
  }

  private fault(channel: Channel, what: string): void {
    this.options.onWarning(`egress: the sandbox's channel ${channel.record.id} ${what}; closed`);
    this.cut(channel, `the sandbox ${what}`);
  }

  /** The one end of every connection: its socket gone, its record out. `tell` sends the runner a close. */
  private finish(channel: Channel, outcome: EgressConnection['outcome'], reason: string | null, tell: boolean): void {
    if (channel.done) return;
    channel.done = true;
    channel.dropped = !tell;
    clearTimeout(channel.timer);
    channel.socket?.destroy();
    this.channels.delete(channel.record.id);
    const { record } = channel;
    record.outcome = record.allowed || outcome !== 'closed' ? outcome : 'refused';
    record.reason = reason;
    record.endTime = this.options.clock.now();
    const summary = this.options.budget.summary;
    summary.connections += 1;
    if (outcome === 'refused') summary.refused += 1;
    if (tell) {
      // Remote bytes still queued go out first (send queues the close behind them).
      this.pump();
      this.send({ type: 'net.close', id: record.id, ...((outcome === 'cut' || outcome === 'failed') && reason ? { reason } : {}) });
    }
    this.options.onConnection(record);
  }
}

function dial(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Half-open: the remote's end is passed on as `net.end`, and what the step still sends after it still goes.
    const socket = connect({ host: address, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
    }, CONNECT_TIMEOUT_MS);
    timer.unref();
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(what)), ms);
    timer.unref();
    promise.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (error: unknown) => (clearTimeout(timer), reject(error instanceof Error ? error : new Error(String(error)))),
    );
  });
}
