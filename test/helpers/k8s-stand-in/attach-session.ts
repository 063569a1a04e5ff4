import { WebSocket, type RawData } from 'ws';
import type { OutputSink } from './container-streams.js';
import type { ContainerRun } from './pod-record.js';

/**
 * One client attached to a container over the channel protocol (k8s.io/apimachinery's wsstream): every binary
 * message starts with its channel, 0 stdin (client → server), 1 stdout, 2 stderr, 3 the status at the end (JSON). v5
 * adds the close message [255, channel]: [255, 0] ends stdin while the output goes on. When the container stops,
 * the client gets the rest of its output, then the status, then the socket closes.
 */
export type ChannelProtocol = 'v5.channel.k8s.io' | 'v4.channel.k8s.io';

export const CHANNEL_PROTOCOLS: readonly ChannelProtocol[] = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];

export interface AttachRequest {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  protocol: ChannelProtocol;
  pod: string;
}

const CLOSE = 255;

export function serveAttach(ws: WebSocket, container: ContainerRun, request: AttachRequest): void {
  const streams = container.streams;
  if (!streams) {
    ws.close(1011, 'container has no streams');
    return;
  }
  const sink: OutputSink = {
    stdout: request.stdout,
    stderr: request.stderr,
    get backlog() {
      return ws.bufferedAmount;
    },
    send(channel, payload, sent) {
      if (ws.readyState !== WebSocket.OPEN) return sent();
      ws.send(Buffer.concat([Buffer.from([channel]), payload]), { binary: true }, () => sent());
    },
  };
  streams.join(sink);
  // A client holds stdin only when it asked for it and the container has one.
  let holdsStdin = request.stdin && (container.spec.stdin ?? false) && !streams.stdinClosed;
  const letGoOfStdin = () => {
    if (!holdsStdin) return;
    holdsStdin = false;
    streams.releaseStdin();
  };

  ws.on('message', (data: RawData) => {
    const message = asBuffer(data);
    if (!message.length) return;
    const channel = message[0];
    if (channel === 0 && holdsStdin) {
      if (!streams.writeStdin(message.subarray(1))) {
        ws.pause();
        void streams.drained().then(() => ws.resume());
      }
    } else if (channel === CLOSE && request.protocol === 'v5.channel.k8s.io' && message[1] === 0) letGoOfStdin();
    // Channel 4 (terminal resize) means nothing without a TTY; anything else is ignored as the server does.
  });
  ws.on('error', () => {}); // 'close' follows
  ws.on('close', () => {
    streams.leave(sink);
    letGoOfStdin();
  });

  void Promise.all([streams.ended, container.exited]).then(([, code]) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify(exitStatus(code, container.name, request.pod)))]), { binary: true });
    ws.close(1000);
  });
}

/** The status on channel 3: Success, or the NonZeroExitCode failure that carries the exit code as a cause. */
export function exitStatus(code: number, container: string, pod: string): Record<string, unknown> {
  if (code === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: container ${container} in pod ${pod} exited with code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

function asBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
