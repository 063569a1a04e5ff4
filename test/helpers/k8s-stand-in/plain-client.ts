import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';

/**
 * The plainest client of the stand-in, for its own tests: JSON over fetch with the bearer token, a watch read line by
 * line, and an attach over `ws` that keeps every message it gets. Nothing of asp's in between.
 */
export interface Answer {
  status: number;

  json: any;
}

export class PlainClient {
  constructor(
    readonly url: string,
    private readonly token: string | undefined,
  ) {}

  /** `token` null: no Authorization header. */
  async call(method: string, path: string, body?: unknown, token: string | null | undefined = this.token): Promise<Answer> {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: { ...(token !== null && token !== undefined ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // plain text (a log)
    }
    return { status: response.status, json };
  }

  /** Opens a watch and collects its events until it ends or `stop` is called. */
  watch(path: string): { events: Array<{ type: string; object: { metadata: { name: string; resourceVersion: string }; status?: { phase?: string } } }>; stop: () => void; ended: Promise<void> } {
    const events: Array<{ type: string; object: { metadata: { name: string; resourceVersion: string } } }> = [];
    const controller = new AbortController();
    const ended = (async () => {
      try {
        const response = await fetch(`${this.url}${path}`, { headers: { Authorization: `Bearer ${this.token ?? ''}` }, signal: controller.signal });
        if (!response.body) return;
        const decoder = new TextDecoder();
        let pending = '';
        for await (const chunk of response.body) {
          pending += decoder.decode(chunk, { stream: true });
          let newline: number;
          while ((newline = pending.indexOf('\n')) !== -1) {
            const line = pending.slice(0, newline);
            pending = pending.slice(newline + 1);
            if (line.trim()) events.push(JSON.parse(line) as (typeof events)[number]);
          }
        }
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
    })();
    return { events, stop: () => controller.abort(), ended };
  }

  /** Attaches with the subprotocols given; resolves once the socket is open, or with the refusal's status and body. */
  attach(path: string, protocols: string[]): Promise<Attached | Refused> {
    const ws = new WebSocket(`${this.url.replace(/^http/, 'ws')}${path}`, protocols, { headers: { Authorization: `Bearer ${this.token ?? ''}` } });
    return new Promise((resolve, reject) => {
      const attached = new Attached(ws);
      ws.once('open', () => resolve(attached));
      ws.once('unexpected-response', (_request, response: IncomingMessage) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        response.on('end', () => {
          resolve({ refused: response.statusCode ?? 0, json: JSON.parse(text) });
          ws.terminate();
        });
      });
      ws.once('error', reject);
    });
  }
}

export interface Refused {
  refused: number;
  json: Answer['json'];
}

export class Attached {
  /** Every message, channel byte first. */
  readonly messages: Buffer[] = [];
  readonly closed: Promise<{ code: number }>;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => this.messages.push(data));
    this.closed = new Promise((resolve) => ws.once('close', (code) => resolve({ code })));
  }

  get protocol(): string {
    return this.ws.protocol;
  }

  send(channel: number, payload: string | Buffer = Buffer.alloc(0)): void {
    this.ws.send(Buffer.concat([Buffer.from([channel]), Buffer.isBuffer(payload) ? payload : Buffer.from(payload)]));
  }

  /** What came on a channel, joined. */
  channel(channel: number): Buffer {
    return Buffer.concat(this.messages.filter((message) => message[0] === channel).map((message) => message.subarray(1)));
  }

  /** The status on channel 3, parsed. */

  status(): any {
    const status = this.channel(3);
    return status.length ? JSON.parse(status.toString('utf8')) : undefined;
  }

  /** Waits until `channel` has brought at least `bytes` bytes. */
  async until(channel: number, bytes: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.channel(channel).length < bytes) {
      if (Date.now() > deadline) throw new Error(`channel ${channel} brought ${this.channel(channel).length} of ${bytes} bytes within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.channel(channel);
  }
}
