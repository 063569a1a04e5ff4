import type { ServerResponse } from 'node:http';
import type { IPod } from 'kubernetes-models/v1';
import { alreadyExists, badRequest, RESOURCES } from './api-status.js';
import type { ClusterState } from './cluster-state.js';
import { sendJson } from './http-io.js';
import type { VersionedObject } from './object-feed.js';
import { admitPod, apiTime } from './pod-admission.js';
import { PodRecord } from './pod-record.js';
import { parseFieldSelector, parseLabelSelector, type Labels } from './selectors.js';

/** /api/v1/namespaces/{ns}/pods: create, get, list and watch, delete, and the log subresource. */
const DEFAULT_WATCH_SECONDS = 300;

export function createPod(state: ClusterState, namespace: string, body: unknown, response: ServerResponse): void {
  state.authorize('create', RESOURCES.pods, 'pods', namespace);
  state.namespace(namespace);
  const object = admitPod(body, { namespace, runtimeClasses: new Set(state.runtimeClasses.map((runtimeClass) => runtimeClass.metadata.name)) });
  state.mutatePod?.(object as unknown as Record<string, unknown>);
  const name = object.metadata?.name ?? '';
  if (state.pods.has(`${namespace}/${name}`)) throw alreadyExists(RESOURCES.pods, name);
  const pod = new PodRecord(object);
  state.feed.stamp(object);
  state.pods.set(`${namespace}/${name}`, pod);
  state.feed.publish('ADDED', 'pods', namespace, object);
  sendJson(response, 201, object);
  if (state.holdingPods) pod.unscheduled = true;
  else state.kubelet.start(pod);
}

export function getPod(state: ClusterState, namespace: string, name: string, response: ServerResponse): void {
  state.authorize('get', RESOURCES.pods, 'pods', namespace, name);
  state.namespace(namespace);
  sendJson(response, 200, state.pod(namespace, name).object);
}

export function listPods(state: ClusterState, namespace: string, query: Record<string, string>, response: ServerResponse): void {
  const watching = isWatch(query);
  state.authorize(watching ? 'watch' : 'list', RESOURCES.pods, 'pods', namespace);
  state.namespace(namespace);
  const matches = selection(query, POD_FIELDS);
  const current = () => [...state.pods.values()].filter((pod) => pod.namespace === namespace).map((pod) => pod.object);
  if (watching) return watch(state, response, 'pods', namespace, matches, query, current);
  sendJson(response, 200, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: state.feed.version }, items: current().filter(matches).map(listItem) });
}

/**
 * A pod that has run its course, or a grace period of 0, goes at once (its containers are removed after the
 * answer, as a node cleans up after the API has let go); otherwise it is Terminating until its containers have
 * stopped within the grace period, and then goes.
 */
export function deletePod(state: ClusterState, namespace: string, name: string, query: Record<string, string>, body: unknown, response: ServerResponse): void {
  state.authorize('delete', RESOURCES.pods, 'pods', namespace, name);
  state.namespace(namespace);
  const pod = state.pod(namespace, name);
  const fromBody = typeof body === 'object' && body !== null && 'gracePeriodSeconds' in body ? Number(body.gracePeriodSeconds) : undefined;
  const fromQuery = query.gracePeriodSeconds !== undefined ? Number(query.gracePeriodSeconds) : undefined;
  const asked = fromBody ?? fromQuery ?? pod.object.spec?.terminationGracePeriodSeconds ?? 30;
  if (!Number.isFinite(asked)) throw badRequest(`invalid gracePeriodSeconds: ${String(asked)}`);
  const phase = pod.phase();
  const grace = phase === 'Succeeded' || phase === 'Failed' || pod.unscheduled ? 0 : Math.max(0, asked);
  const metadata = (pod.object.metadata ??= {});
  if (!metadata.deletionTimestamp || grace === 0) {
    metadata.deletionTimestamp = apiTime(new Date(Date.now() + grace * 1000));
    metadata.deletionGracePeriodSeconds = grace;
  }
  if (grace === 0) {
    pod.hurry.abort();
    state.removePod(pod);
    pod.deleting ??= state.inBackground(state.kubelet.teardown(pod, 0));
  } else if (!pod.deleting) {
    state.feed.stamp(pod.object);
    state.feed.publish('MODIFIED', 'pods', namespace, pod.object);
    pod.deleting = state.inBackground(state.kubelet.teardown(pod, grace).then(() => state.removePod(pod)));
  }
  sendJson(response, 200, pod.object);
}

/** The container's output so far (the stand-in keeps its last MiB), as text; no follow. */
export function podLog(state: ClusterState, namespace: string, name: string, query: Record<string, string>, response: ServerResponse): void {
  state.authorize('get', RESOURCES.pods, 'pods/log', namespace, name);
  state.namespace(namespace);
  const pod = state.pod(namespace, name);
  const container = state.container(pod, query.container);
  if (query.follow === 'true' || query.follow === '1') throw badRequest('the stand-in does not follow logs');
  if ('waiting' in container.state || !container.streams) {
    throw badRequest(`container "${container.name}" in pod "${pod.name}" is waiting to start: ${'waiting' in container.state ? container.state.waiting.reason : 'ContainerCreating'}`);
  }
  const lines = Number(query.tailLines);
  let text = Number.isInteger(lines) && lines >= 0 ? container.streams.log.tail(lines, Number.MAX_SAFE_INTEGER) : container.streams.log.bytes().toString('utf8');
  const limit = Number(query.limitBytes);
  if (Number.isInteger(limit) && limit > 0) text = Buffer.from(text).subarray(0, limit).toString('utf8');
  response.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) });
  response.end(text);
}

export function isWatch(query: Record<string, string>): boolean {
  return query.watch === 'true' || query.watch === '1';
}

/** labelSelector and fieldSelector of a list or watch, as one test. */
export function selection(query: Record<string, string>, fields: Record<string, (object: unknown) => string | undefined>): (object: VersionedObject) => boolean {
  const byLabel = parseLabelSelector(query.labelSelector);
  const byField = parseFieldSelector(query.fieldSelector, fields);
  return (object) => byLabel(metadataOf(object).labels ?? {}) && byField(object);
}

export function watch(
  state: ClusterState,
  response: ServerResponse,
  resource: string,
  namespace: string,
  matches: (object: VersionedObject) => boolean,
  query: Record<string, string>,
  current: () => VersionedObject[],
): void {
  const timeout = Number(query.timeoutSeconds);
  state.feed.watch(response, {
    resource,
    namespace,
    matches,
    resourceVersion: query.resourceVersion,
    timeoutSeconds: Number.isFinite(timeout) && timeout > 0 ? timeout : DEFAULT_WATCH_SECONDS,
    current,
  });
}

/** Items of a list carry no kind or apiVersion of their own (the list says them). */
export function listItem<T extends object>(object: T): Omit<T, 'kind' | 'apiVersion'> {
  const { kind: _kind, apiVersion: _apiVersion, ...rest } = object as T & { kind?: unknown; apiVersion?: unknown };
  return rest;
}

export function metadataOf(object: unknown): { name?: string; namespace?: string; labels?: Labels } {
  return (object as { metadata?: { name?: string; namespace?: string; labels?: Labels } }).metadata ?? {};
}

/** The fields a pod list or watch can select on (the subset of the API's that means something here). */
const POD_FIELDS: Record<string, (object: unknown) => string | undefined> = {
  'metadata.name': (object) => metadataOf(object).name,
  'metadata.namespace': (object) => metadataOf(object).namespace,
  'spec.nodeName': (object) => (object as IPod).spec?.nodeName,
  'spec.restartPolicy': (object) => (object as IPod).spec?.restartPolicy,
  'spec.serviceAccountName': (object) => (object as IPod).spec?.serviceAccountName,
  'status.phase': (object) => (object as IPod).status?.phase,
};
