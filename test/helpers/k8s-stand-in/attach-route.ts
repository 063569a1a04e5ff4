import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocketServer } from 'ws';
import { badRequest, pathNotFound, RESOURCES } from './api-status.js';
import { CHANNEL_PROTOCOLS, serveAttach, type ChannelProtocol } from './attach-session.js';
import type { ClusterState } from './cluster-state.js';
import { queryOf } from './http-io.js';

/**
 * The attach upgrade (/api/v1/namespaces/{ns}/pods/{name}/attach): every check the API server and the kubelet
 * make, in their order, each refusal a Status; then the channel protocol (attach-session.ts). `authenticate` throws
 * 401 for a request without the token.
 */
export function attachUpgrade(state: ClusterState, sockets: WebSocketServer, authenticate: (request: IncomingMessage) => void, request: IncomingMessage, socket: Duplex, head: Buffer): void {
  const url = new URL(request.url ?? '/', 'http://stand-in');
  const query = queryOf(url);
  state.requests.push({ method: request.method ?? 'GET', path: url.pathname, query });
  authenticate(request);
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const [api, version, namespaces, namespace, pods, name, attach] = parts;
  if (parts.length !== 7 || api !== 'api' || version !== 'v1' || namespaces !== 'namespaces' || pods !== 'pods' || attach !== 'attach' || namespace === undefined || name === undefined) {
    throw pathNotFound();
  }
  // A WebSocket attach is a GET that also needs create on pods/attach (kube-apiserver's check for websocket upgrades).
  state.authorize('get', RESOURCES.pods, 'pods/attach', namespace, name);
  state.authorize('create', RESOURCES.pods, 'pods/attach', namespace, name);
  state.namespace(namespace);
  const pod = state.pod(namespace, name);
  const container = state.container(pod, query.container);
  if (!pod.object.spec?.nodeName) throw badRequest(`pod ${pod.name} does not have a host assigned`);
  if (state.refusingAttach) throw badRequest(`unable to upgrade connection: the kubelet cannot attach to container "${container.name}" in pod "${pod.name}" (the stand-in refuses attach)`);
  if ('waiting' in container.state || !container.streams) {
    throw badRequest(`container "${container.name}" in pod "${pod.name}" is waiting to start: ${'waiting' in container.state ? container.state.waiting.reason : 'ContainerCreating'}`);
  }
  if ('terminated' in container.state) throw badRequest(`container "${container.name}" in pod "${pod.name}" is terminated`);
  const offered = String(request.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((protocol) => protocol.trim())
    .filter(Boolean);
  const protocol: ChannelProtocol | undefined = CHANNEL_PROTOCOLS.find((candidate) => offered.includes(candidate));
  if (!protocol) throw badRequest(`unable to upgrade connection: none of the offered subprotocols (${offered.join(', ') || 'none'}) is supported: the stand-in speaks ${CHANNEL_PROTOCOLS.join(', ')}`);
  const flag = (key: string) => query[key] === 'true' || query[key] === '1';
  sockets.handleUpgrade(request, socket, head, (ws) => serveAttach(ws, container, { stdin: flag('stdin'), stdout: flag('stdout'), stderr: flag('stderr'), protocol, pod: pod.name }));
}
