import { PassThrough, Writable } from 'node:stream';
import { Agent } from 'node:http';
import type { RequestOptions } from 'node:https';
import WebSocket from 'ws';
import { z } from 'zod';
import { parseJsonWith } from '../config/task-spec.js';
import { AspError, errorMessage } from '../core/asp-error.js';
import type { KubeApi } from './kube-api.js';

/*
 * pods/attach over a WebSocket, in the channel framing of the kubelet's streaming protocol: each binary message
 * starts with its channel (0 stdin, 1 stdout, 2 stderr, 3 the status at the end, 255 close, v5 only). v5 can close
 * stdin alone; on v4 stdin ends when the socket closes (the container's stdinOnce), so asp asks for v5 first.
 */

const PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const STATUS = 3;
const CLOSE = 255;
/** How often an open attach stream is pinged. */
const PING_MS = 30_000;
/** How much the socket may hold unsent before stdin's writes wait. */
const SEND_HIGH_WATER = 1024 * 1024;

const channelStatus = z.object({ status: z.string().nullish(), message: z.string().nullish() });

/** The credentials, the CA and the agent of a request, in the WebSocket client's words. */
function clientOptions(request: RequestOptions): WebSocket.ClientOptions {
  const { agent, headers, ca, cert, key, pfx, passphrase, rejectUnauthorized, servername, auth } = request;
  return {
    ...(agent instanceof Agent ? { agent } : {}),
    headers: Object.fromEntries(Object.entries(headers ?? {}).map(([name, value]) => [name, String(value)])),
    ...(auth ? { auth } : {}),
    ca,
    cert,
    key,
    pfx,
    passphrase,
    ...(rejectUnauthorized !== undefined ? { rejectUnauthorized } : {}),
    ...(servername ? { servername } : {}),
  };
}

export interface AttachSession {
  stdout: PassThrough;
  stderr: PassThrough;
  stdin: Writable;
  /** The kubelet's last word (channel 3): `Success`, or a failure with the exit code; undefined when it said none. */
  status: Promise<{ status?: string; message?: string } | undefined>;
  /** Which framing the server chose. */
  protocol: string;
  close(): void;
}

export async function attachContainer(api: KubeApi, namespace: string, pod: string, container: string, options: { stdin: boolean }): Promise<AttachSession> {
  const purpose = { verb: 'create', resource: 'pods/attach' } as const;
  const { url, options: request } = await api.upgradeOptions(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/attach`, {
    container,
    stdin: String(options.stdin),
    stdout: 'true',
    stderr: 'true',
    tty: 'false',
  });
  const socket = new WebSocket(url, PROTOCOLS, { ...clientOptions(request), handshakeTimeout: 30_000, perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.length < 64 && chunks.push(chunk));
      response.on('end', () => {
        const error = api.refused(response.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), purpose);
        reject(new AspError(error.code, `cannot attach to ${container} of pod ${pod}: ${error.message}`, error.hint));
      });
      response.on('error', () => reject(api.unreachable(new Error('the attach answer broke off'), purpose)));
    });
    socket.once('error', (error) =>
      reject(new AspError('K8S_UNAVAILABLE', `cannot attach to ${container} of pod ${pod}: ${errorMessage(error)}`, 'check that the API server and the kubelet answer (kubectl attach)')),
    );
  });
  const protocol = socket.protocol;
  if (!PROTOCOLS.includes(protocol)) {
    socket.terminate();
    throw new AspError('K8S_FAILED', `the API server answered attach with the stream protocol "${protocol || 'none'}", not ${PROTOCOLS.join(' or ')}`, 'use Kubernetes 1.4 or later');
  }
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let resolveStatus!: (value: { status?: string; message?: string } | undefined) => void;
  const status = new Promise<{ status?: string; message?: string } | undefined>((resolve) => (resolveStatus = resolve));
  // A slow reader of stdout holds the socket: the kubelet then holds the container's writes (backpressure end to end).
  const relieve = () => {
    if (!stdout.writableNeedDrain && !stderr.writableNeedDrain) socket.resume();
  };
  stdout.on('drain', relieve);
  stderr.on('drain', relieve);
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    const bytes = isBinary ? data : Buffer.from(data);
    if (!bytes.length) return;
    const channel = bytes[0];
    const payload = bytes.subarray(1);
    if (channel === STDOUT || channel === STDERR) {
      const target = channel === STDOUT ? stdout : stderr;
      if (payload.length && !target.write(payload)) socket.pause();
    } else if (channel === STATUS) {
      const parsed = parseJsonWith(payload.toString('utf8'), channelStatus);
      resolveStatus(
        'value' in parsed ? { status: parsed.value.status ?? undefined, message: parsed.value.message ?? undefined } : { status: 'Failure', message: payload.toString('utf8').slice(0, 400) },
      );
    } else if (channel === CLOSE) {
      if (payload[0] === STDOUT) stdout.end();
      if (payload[0] === STDERR) stderr.end();
    }
  });
  // A step may be silent for longer than a load balancer's idle cut: a ping keeps the stream (and its protocol) open.
  const keepAlive = setInterval(() => {
    if (socket.readyState === WebSocket.OPEN) socket.ping();
  }, PING_MS);
  keepAlive.unref();
  socket.on('close', () => {
    clearInterval(keepAlive);
    resolveStatus(undefined);
    stdout.end();
    stderr.end();
  });
  socket.on('error', () => {
    /* the close that follows ends the streams */
  });
  const stdin = new Writable({
    highWaterMark: SEND_HIGH_WATER,
    write(chunk: Buffer, _encoding, callback) {
      if (socket.readyState !== WebSocket.OPEN) return callback(new Error('the attach stream is closed'));
      socket.send(Buffer.concat([Buffer.of(STDIN), chunk]), { binary: true }, (error) => callback(error ?? null));
    },
    final(callback) {
      // v5 closes stdin alone; v4 cannot, and the container's stdin ends when the socket does.
      if (protocol === PROTOCOLS[0] && socket.readyState === WebSocket.OPEN) socket.send(Buffer.of(CLOSE, STDIN), { binary: true }, () => callback());
      else callback();
    },
  });
  return {
    stdout,
    stderr,
    stdin,
    status,
    protocol,
    close: () => {
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.close();
    },
  };
}
