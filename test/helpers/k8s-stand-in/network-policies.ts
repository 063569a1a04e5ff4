import { randomUUID } from 'node:crypto';
import { NetworkPolicy, type INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { badRequest, cause, invalid, RESOURCES, type StatusCause } from './api-status.js';
import { schemaCauses } from './model-validation.js';
import { dnsSubdomainProblems, labelKeyProblems, labelValueProblems } from './name-rules.js';
import { apiTime } from './pod-admission.js';
import { selectorMatches, type Labels } from './selectors.js';

/**
 * NetworkPolicies are stored and judged, not enforced: the stand-in's pods have no network at all (NetworkMode none),
 * which is where a cluster's CNI would apply them. `isolated` says whether the policies in force would cut a pod off.
 */
export function admitNetworkPolicy(body: unknown, namespace: string): INetworkPolicy {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the body of the request was in an unknown format - accepted media types include: application/json');
  const draft = structuredClone(body) as Record<string, unknown> & INetworkPolicy;
  if (draft.kind !== undefined && draft.kind !== 'NetworkPolicy') throw badRequest(`the kind in the data (${String(draft.kind)}) is not NetworkPolicy`);
  if (draft.apiVersion !== undefined && draft.apiVersion !== 'networking.k8s.io/v1') {
    throw badRequest(`the API version in the data (${String(draft.apiVersion)}) does not match the expected API version (networking.k8s.io/v1)`);
  }
  const metadata = (draft.metadata ??= {});
  if (metadata.namespace !== undefined && metadata.namespace !== namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
  const name = metadata.name ?? '';
  const schema = schemaCauses(() => new NetworkPolicy(draft).validate(), draft);
  if (schema.length) throw invalid(RESOURCES.networkpolicies, name, schema);
  const causes: StatusCause[] = [];
  if (!name) causes.push(cause.required('metadata.name', 'name or generateName is required'));
  else for (const problem of dnsSubdomainProblems(name)) causes.push(cause.invalid('metadata.name', name, problem));
  for (const [key, value] of Object.entries(metadata.labels ?? {})) {
    for (const problem of labelKeyProblems(key)) causes.push(cause.invalid('metadata.labels', key, problem));
    for (const problem of labelValueProblems(value)) causes.push(cause.invalid('metadata.labels', value, problem));
  }
  if (causes.length) throw invalid(RESOURCES.networkpolicies, name, causes);
  // No spec is an empty one: its empty podSelector selects every pod. The API's default policyTypes: Ingress always,
  // Egress when the policy has egress rules.
  const spec = (draft.spec ??= { podSelector: {} });
  if (!spec.policyTypes?.length) spec.policyTypes = spec.egress?.length ? ['Ingress', 'Egress'] : ['Ingress'];
  draft.apiVersion = 'networking.k8s.io/v1';
  draft.kind = 'NetworkPolicy';
  draft.metadata = { ...metadata, name, namespace, uid: randomUUID(), creationTimestamp: apiTime(), generation: 1 };
  return draft;
}

/**
 * Whether the policies cut a pod off both ways. Policies add up: a direction is closed when some policy that selects
 * the pod covers it and none of those that cover it allows anything (a rule, even an empty one, allows).
 */
export function isolated(labels: Labels, policies: INetworkPolicy[]): boolean {
  const selecting = policies.filter((policy) => selectorMatches(policy.spec?.podSelector, labels));
  const closed = (type: 'Ingress' | 'Egress') => {
    const covering = selecting.filter((policy) => policy.spec?.policyTypes?.includes(type));
    return covering.length > 0 && covering.every((policy) => !(type === 'Ingress' ? policy.spec?.ingress : policy.spec?.egress)?.length);
  };
  return closed('Ingress') && closed('Egress');
}
