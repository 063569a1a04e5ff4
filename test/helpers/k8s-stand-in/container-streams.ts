import type { Duplex } from 'node:stream';

/**
 * One container's stdin, stdout and stderr, held from before it starts (a pod's containers start before anyone
 * attaches) on Docker's attach connection. Output goes to the clients attached at the time, and to a bounded tail
 * that stands for the container's log; output with no client attached is not kept for a later one, as on a kubelet.
 * A slow client holds the connection back (Docker then holds the container's writes), so nothing queues without bound.
 */
export interface OutputSink {
  stdout: boolean;
  stderr: boolean;
  /** Bytes queued towards the client and not yet sent. */
  readonly backlog: number;
  send(channel: 1 | 2, payload: Buffer, sent: () => void): void;
}

/** Over this much queued towards any client, reading from Docker stops; under LOW_WATER it goes on. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
/** The log tail kept per container (what FallbackToLogsOnError and /log read). */
const LOG_BYTES = 1024 * 1024;

export class ContainerStreams {
  readonly log = new OutputTail(LOG_BYTES);
  /** Resolves when Docker ends the connection: the container has stopped and all its output is in. */
  readonly ended: Promise<void>;
  private readonly sinks = new Set<OutputSink>();
  private pending: Buffer = Buffer.alloc(0);
  private paused = false;
  private poll: NodeJS.Timeout | undefined;
  private stdinOpen = true;

  constructor(
    private readonly socket: Duplex,
    /** stdinOnce: the first client to let go of stdin closes it for good. */
    private readonly stdinOnce: boolean,
  ) {
    this.ended = new Promise((resolve) => {
      socket.once('end', resolve);
      socket.once('close', resolve);
    });
    socket.on('error', () => {}); // a connection Docker drops ends the streams; 'close' follows
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    void this.ended.then(() => this.stopPolling());
    socket.resume();
  }

  get stdinClosed(): boolean {
    return !this.stdinOpen;
  }

  join(sink: OutputSink): void {
    this.sinks.add(sink);
  }

  leave(sink: OutputSink): void {
    this.sinks.delete(sink);
    this.relieve();
  }

  /** Writes to the container's stdin, in order; false when the caller should wait for `drained`. */
  writeStdin(chunk: Buffer): boolean {
    if (!this.stdinOpen || this.socket.writableEnded || this.socket.destroyed) return true;
    return this.socket.write(chunk);
  }

  drained(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.socket.writableNeedDrain || this.socket.destroyed) return resolve();
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /**
   * A client let go of stdin. With stdinOnce the container's stdin ends (Docker closes it at the end of the attach
   * stream's stdin, and keeps the output going); without it stdin stays open for the next client, as on a kubelet.
   */
  releaseStdin(): void {
    if (!this.stdinOnce || !this.stdinOpen) return;
    this.stdinOpen = false;
    if (!this.socket.destroyed) this.socket.end();
  }

  destroy(): void {
    this.stopPolling();
    this.socket.destroy();
  }

  /** Docker's multiplexed frames: an 8-byte header (stream, 0, 0, 0, big-endian length), then the payload. */
  private receive(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= 8) {
      const length = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + length) break;
      const channel = this.pending[0] === 1 ? 1 : 2;
      const payload = this.pending.subarray(8, 8 + length);
      this.pending = this.pending.subarray(8 + length);
      this.log.append(payload);
      for (const sink of this.sinks) if (channel === 1 ? sink.stdout : sink.stderr) sink.send(channel, payload, () => this.relieve());
    }
    if (!this.paused && [...this.sinks].some((sink) => sink.backlog > HIGH_WATER)) {
      this.paused = true;
      this.socket.pause();
      // ws calls back once a message is written to its socket; the poll covers a client that went away meanwhile.
      this.poll = setInterval(() => this.relieve(), 25);
    }
  }

  private relieve(): void {
    if (!this.paused || [...this.sinks].some((sink) => sink.backlog > LOW_WATER)) return;
    this.paused = false;
    this.stopPolling();
    this.socket.resume();
  }

  private stopPolling(): void {
    if (this.poll) clearInterval(this.poll);
    this.poll = undefined;
  }
}

/** The last `limit` bytes of a container's output, stdout and stderr interleaved as they came. */
export class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly limit: number) {}

  append(chunk: Buffer): void {
    this.chunks.push(Buffer.from(chunk));
    this.size += chunk.length;
    while (this.size > this.limit && this.chunks.length > 1) this.size -= this.chunks.shift()?.length ?? 0;
  }

  bytes(): Buffer {
    const all = Buffer.concat(this.chunks);
    return all.length > this.limit ? all.subarray(all.length - this.limit) : all;
  }

  /** The kubelet's fallback termination message: the last `lines` lines, at most `bytes` bytes of them. */
  tail(lines: number, bytes: number): string {
    if (lines <= 0) return '';
    const text = this.bytes().toString('utf8');
    const kept = text.split('\n');
    const last = text.endsWith('\n') ? kept.slice(-lines - 1).join('\n') : kept.slice(-lines).join('\n');
    const buffer = Buffer.from(last);
    return buffer.length > bytes ? buffer.subarray(buffer.length - bytes).toString('utf8') : last;
  }
}
