import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { badRequest, KubeError, methodNotAllowed, notFound, pathNotFound, RESOURCES, unauthorized } from './api-status.js';
import { attachUpgrade } from './attach-route.js';
import { CHANNEL_PROTOCOLS } from './attach-session.js';
import { ClusterState, type StateOptions } from './cluster-state.js';
import { queryOf, readJson, refuseUpgrade, sendJson, sendStatus } from './http-io.js';
import { createPolicy, deletePolicy, getPolicy, listPolicies } from './policy-routes.js';
import { createPod, deletePod, getPod, listPods, podLog } from './pod-routes.js';

/**
 * The API server: authentication, then the routes of the subset of the API asp's Kubernetes backend uses (version,
 * namespaces, pods with watch, log and attach, NetworkPolicies, RuntimeClasses, SelfSubjectAccessReview), every
 * refusal a Status. What it holds is in ClusterState; pods run through the kubelet.
 */
export class KubeApi {
  readonly state: ClusterState;
  private readonly sockets = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => CHANNEL_PROTOCOLS.find((protocol) => offered.has(protocol)) ?? false,
  });

  constructor(
    private readonly token: string,
    options: StateOptions,
  ) {
    this.state = new ClusterState(options);
  }

  handle(request: IncomingMessage, response: ServerResponse): void {
    void this.route(request, response).catch((error: unknown) => {
      if (response.headersSent) return void response.destroy();
      if (error instanceof KubeError) sendStatus(response, error.status);
      else sendJson(response, 500, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: String(error), reason: 'InternalError', code: 500 });
    });
  }

  upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {});
    try {
      attachUpgrade(this.state, this.sockets, (incoming) => this.authenticate(incoming), request, socket, head);
    } catch (error) {
      refuseUpgrade(socket, error instanceof KubeError ? error.status : badRequest(String(error)).status);
    }
  }

  /** Ends the watches and attach sessions, stops every pod and removes what it had in Docker. */
  async shutdown(): Promise<void> {
    this.state.feed.closeAll();
    for (const client of this.sockets.clients) client.terminate();
    for (const pod of this.state.pods.values()) {
      pod.hurry.abort();
      pod.deleting ??= this.state.inBackground(this.state.kubelet.teardown(pod, 0));
    }
    try {
      await this.state.settle();
    } finally {
      this.sockets.close();
    }
  }

  private authenticate(request: IncomingMessage): void {
    if (request.headers.authorization !== `Bearer ${this.token}`) throw unauthorized();
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const state = this.state;
    const url = new URL(request.url ?? '/', 'http://stand-in');
    const query = queryOf(url);
    const record: { method: string; path: string; query: Record<string, string>; body?: unknown } = { method: request.method ?? 'GET', path: url.pathname, query };
    state.requests.push(record);
    this.authenticate(request);
    const method = record.method;
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const body = async () => (record.body = await readJson(request));
    const only = (allowed: string) => {
      if (method !== allowed) throw methodNotAllowed();
    };
    const [a, b, c, d, e, f, g] = parts;

    if (parts.length === 1 && a === 'version') {
      only('GET');
      return sendJson(response, 200, { major: '1', minor: '31', gitVersion: 'v1.31.0-asp-stand-in', platform: 'linux/amd64' });
    }
    if (a === 'api' && b === 'v1' && c === 'namespaces' && d !== undefined) {
      if (parts.length === 4) {
        only('GET');
        // RBAC sees a namespace's own name as the request's namespace.
        state.authorize('get', RESOURCES.namespaces, 'namespaces', d, d);
        return sendJson(response, 200, state.namespace(d));
      }
      if (e === 'pods' && parts.length === 5) {
        if (method === 'POST') return createPod(state, d, await body(), response);
        only('GET');
        return listPods(state, d, query, response);
      }
      if (e === 'pods' && f !== undefined && parts.length === 6) {
        if (method === 'DELETE') return deletePod(state, d, f, query, await body(), response);
        only('GET');
        return getPod(state, d, f, response);
      }
      if (e === 'pods' && f !== undefined && parts.length === 7 && g === 'log') {
        only('GET');
        return podLog(state, d, f, query, response);
      }
      if (e === 'pods' && f !== undefined && parts.length === 7 && g === 'attach') throw badRequest('Upgrade request required');
    }
    if (a === 'apis' && b === 'networking.k8s.io' && c === 'v1' && d === 'namespaces' && e !== undefined && f === 'networkpolicies') {
      if (parts.length === 6) {
        if (method === 'POST') return createPolicy(state, e, await body(), response);
        only('GET');
        return listPolicies(state, e, query, response);
      }
      if (g !== undefined && parts.length === 7) {
        if (method === 'DELETE') {
          await body();
          return deletePolicy(state, e, g, response);
        }
        only('GET');
        return getPolicy(state, e, g, response);
      }
    }
    if (a === 'apis' && b === 'node.k8s.io' && c === 'v1' && d === 'runtimeclasses' && parts.length <= 5) {
      only('GET');
      if (e === undefined) {
        state.authorize('list', RESOURCES.runtimeclasses, 'runtimeclasses', undefined);
        return sendJson(response, 200, { kind: 'RuntimeClassList', apiVersion: 'node.k8s.io/v1', metadata: { resourceVersion: state.feed.version }, items: state.runtimeClasses });
      }
      state.authorize('get', RESOURCES.runtimeclasses, 'runtimeclasses', undefined, e);
      const found = state.runtimeClasses.find((runtimeClass) => runtimeClass.metadata.name === e);
      if (!found) throw notFound(RESOURCES.runtimeclasses, e);
      return sendJson(response, 200, { kind: 'RuntimeClass', apiVersion: 'node.k8s.io/v1', ...found });
    }
    if (a === 'apis' && b === 'authorization.k8s.io' && c === 'v1' && d === 'selfsubjectaccessreviews' && parts.length === 4) {
      only('POST');
      return this.review(await body(), response);
    }
    throw pathNotFound();
  }

  /** SelfSubjectAccessReview (which every authenticated user may ask): allowed unless forbid() took the verb away. */
  private review(body: unknown, response: ServerResponse): void {
    this.state.authorize('create', { group: 'authorization.k8s.io', plural: 'selfsubjectaccessreviews', kind: 'SelfSubjectAccessReview' }, 'selfsubjectaccessreviews', undefined);
    const spec = typeof body === 'object' && body !== null && 'spec' in body && typeof body.spec === 'object' && body.spec !== null ? (body.spec as Record<string, unknown>) : undefined;
    if (!spec) throw badRequest('SelfSubjectAccessReview: spec is required');
    const attributes = spec.resourceAttributes as { verb?: string; resource?: string; subresource?: string } | undefined;
    const allowed = !attributes || this.state.allows(attributes.verb ?? '', `${attributes.resource ?? ''}${attributes.subresource ? `/${attributes.subresource}` : ''}`);
    sendJson(response, 201, {
      kind: 'SelfSubjectAccessReview',
      apiVersion: 'authorization.k8s.io/v1',
      metadata: { creationTimestamp: null },
      spec,
      status: allowed ? { allowed: true, reason: 'RBAC: allowed by the stand-in' } : { allowed: false },
    });
  }
}
