import type { ServerResponse } from 'node:http';
import { alreadyExists, deleted, RESOURCES } from './api-status.js';
import type { ClusterState } from './cluster-state.js';
import { sendJson } from './http-io.js';
import { admitNetworkPolicy } from './network-policies.js';
import { isWatch, listItem, metadataOf, selection, watch } from './pod-routes.js';

/** /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies: create, get, list (and watch), delete. */
export function createPolicy(state: ClusterState, namespace: string, body: unknown, response: ServerResponse): void {
  state.authorize('create', RESOURCES.networkpolicies, 'networkpolicies', namespace);
  state.namespace(namespace);
  const policy = admitNetworkPolicy(body, namespace);
  const name = policy.metadata?.name ?? '';
  if (state.policies.has(`${namespace}/${name}`)) throw alreadyExists(RESOURCES.networkpolicies, name);
  state.feed.stamp(policy);
  state.policies.set(`${namespace}/${name}`, policy);
  state.feed.publish('ADDED', 'networkpolicies', namespace, policy);
  sendJson(response, 201, policy);
}

export function getPolicy(state: ClusterState, namespace: string, name: string, response: ServerResponse): void {
  state.authorize('get', RESOURCES.networkpolicies, 'networkpolicies', namespace, name);
  state.namespace(namespace);
  sendJson(response, 200, state.policy(namespace, name));
}

export function listPolicies(state: ClusterState, namespace: string, query: Record<string, string>, response: ServerResponse): void {
  const watching = isWatch(query);
  state.authorize(watching ? 'watch' : 'list', RESOURCES.networkpolicies, 'networkpolicies', namespace);
  state.namespace(namespace);
  const matches = selection(query, { 'metadata.name': (object) => metadataOf(object).name, 'metadata.namespace': (object) => metadataOf(object).namespace });
  const current = () => state.policiesIn(namespace);
  if (watching) return watch(state, response, 'networkpolicies', namespace, matches, query, current);
  sendJson(response, 200, { kind: 'NetworkPolicyList', apiVersion: 'networking.k8s.io/v1', metadata: { resourceVersion: state.feed.version }, items: current().filter(matches).map(listItem) });
}

/** A NetworkPolicy has no graceful deletion: the answer is the generic registry's Success. */
export function deletePolicy(state: ClusterState, namespace: string, name: string, response: ServerResponse): void {
  state.authorize('delete', RESOURCES.networkpolicies, 'networkpolicies', namespace, name);
  state.namespace(namespace);
  const policy = state.policy(namespace, name);
  state.policies.delete(`${namespace}/${name}`);
  // A pod running now is no longer behind it.
  for (const pod of state.pods.values()) if (pod.namespace === namespace) state.noteExposure(pod);
  state.feed.publish('DELETED', 'networkpolicies', namespace, state.feed.stamp(policy));
  sendJson(response, 200, deleted(RESOURCES.networkpolicies, name, policy.metadata?.uid));
}
