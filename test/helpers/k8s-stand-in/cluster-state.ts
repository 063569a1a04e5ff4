import { randomUUID } from 'node:crypto';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import type { IPod } from 'kubernetes-models/v1';
import { badRequest, forbidden, notFound, rbacRefusal, RESOURCES, type ResourceName } from './api-status.js';
import type { Kubelet } from './kubelet.js';
import { isolated } from './network-policies.js';
import { ObjectFeed, type VersionedObject } from './object-feed.js';
import { apiTime } from './pod-admission.js';
import type { ContainerRun, PodRecord } from './pod-record.js';

/**
 * What the API server holds (etcd, in effect): namespaces, pods, NetworkPolicies, RuntimeClasses, the verbs forbid()
 * took away, every request; and the clean-ups still going after an answer, which close() waits for.
 */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body?: unknown;
}

export interface StateOptions {
  namespace: string;
  extraNamespaces: string[];
  runtimeClasses: Array<{ name: string; handler: string }>;
}

export interface RuntimeClassObject {
  metadata: { name: string; uid: string; creationTimestamp: string; resourceVersion?: string };
  handler: string;
}

export interface PodSummary {
  name: string;
  manifest: IPod;
  phase: string;
  dockerIds: string[];
  isolated: boolean;
}

export class ClusterState {
  readonly requests: RecordedRequest[] = [];
  readonly feed = new ObjectFeed();
  /** Who the token authenticates as: the service account asp runs as on a cluster. */
  readonly user: string;
  refusingAttach = false;
  /** No node takes new pods (a cluster with no room): they stay Pending, unscheduled. */
  holdingPods = false;
  /** A mutating admission webhook's stand-in: changes each pod after validation, before it is stored. */
  mutatePod: ((pod: Record<string, unknown>) => void) | undefined;
  readonly runtimeClasses: RuntimeClassObject[];
  readonly pods = new Map<string, PodRecord>();
  readonly deletedPods: PodRecord[] = [];
  readonly policies = new Map<string, INetworkPolicy>();
  private readonly namespaces = new Map<string, VersionedObject>();
  private readonly refused = new Set<string>();
  private readonly background = new Set<Promise<void>>();
  private readonly failures: unknown[] = [];
  private node: Kubelet | undefined;

  constructor(options: StateOptions) {
    this.user = `system:serviceaccount:${options.namespace}:asp-runner`;
    for (const name of [options.namespace, ...options.extraNamespaces]) {
      const namespace = {
        kind: 'Namespace',
        apiVersion: 'v1',
        metadata: { name, uid: randomUUID(), creationTimestamp: apiTime(), labels: { 'kubernetes.io/metadata.name': name } },
        spec: { finalizers: ['kubernetes'] },
        status: { phase: 'Active' },
      };
      this.namespaces.set(name, this.feed.stamp(namespace));
    }
    this.runtimeClasses = options.runtimeClasses.map(({ name, handler }) => this.feed.stamp({ metadata: { name, uid: randomUUID(), creationTimestamp: apiTime() }, handler }));
  }

  get kubelet(): Kubelet {
    if (!this.node) throw new Error('the stand-in has no kubelet');
    return this.node;
  }

  set kubelet(kubelet: Kubelet) {
    this.node = kubelet;
  }

  /** Takes a verb away (`on`, the default) or gives it back. */
  forbid(verb: string, resource: string, on = true): void {
    if (on) this.refused.add(`${verb} ${resource}`);
    else this.refused.delete(`${verb} ${resource}`);
  }

  allows(verb: string, resource: string): boolean {
    return !this.refused.has(`${verb} ${resource}`);
  }

  /** RBAC, as far as forbid() has taken verbs away: 403 with kube-apiserver's sentence. */
  authorize(verb: string, resource: ResourceName, rbacResource: string, namespace: string | undefined, name?: string): void {
    if (!this.allows(verb, rbacResource)) throw forbidden(resource, name, rbacRefusal(this.user, verb, rbacResource, resource.group, namespace));
  }

  namespace(name: string): VersionedObject {
    const found = this.namespaces.get(name);
    if (!found) throw notFound(RESOURCES.namespaces, name);
    return found;
  }

  pod(namespace: string, name: string): PodRecord {
    const found = this.pods.get(`${namespace}/${name}`);
    if (!found) throw notFound(RESOURCES.pods, name);
    return found;
  }

  policy(namespace: string, name: string): INetworkPolicy {
    const found = this.policies.get(`${namespace}/${name}`);
    if (!found) throw notFound(RESOURCES.networkpolicies, name);
    return found;
  }

  policiesIn(namespace: string): INetworkPolicy[] {
    return [...this.policies.values()].filter((policy) => policy.metadata?.namespace === namespace);
  }

  /** The container a subresource names; the only one when the pod has one and none is named (the API server's rule). */
  container(pod: PodRecord, name: string | undefined): ContainerRun {
    if (!name) {
      const [only, ...others] = pod.mainContainers;
      if (only && !others.length) return only;
      const inits = pod.initContainers.map((container) => container.name);
      throw badRequest(
        `a container name must be specified for pod ${pod.name}, choose one of: [${pod.mainContainers.map((container) => container.name).join(' ')}]${inits.length ? ` or one of the init containers: [${inits.join(' ')}]` : ''}`,
      );
    }
    const found = pod.containers.find((container) => container.name === name);
    if (!found) throw badRequest(`container ${name} is not valid for pod ${pod.name}`);
    return found;
  }

  /** A pod's status changed on the node: a new resourceVersion, and a MODIFIED for its watchers. */
  changed(pod: PodRecord): void {
    if (pod.removed) return;
    pod.object.status = pod.status();
    this.noteExposure(pod);
    this.feed.stamp(pod.object);
    this.feed.publish('MODIFIED', 'pods', pod.namespace, pod.object);
  }

  /** The pod leaves the API (a DELETED for its watchers); it stays listed by summaries() as Deleted. */
  removePod(pod: PodRecord): void {
    if (pod.removed) return;
    pod.object.status = pod.status();
    pod.isolatedWhenRemoved = this.isolatedNow(pod);
    pod.removed = true;
    this.pods.delete(`${pod.namespace}/${pod.name}`);
    this.deletedPods.push(pod);
    this.feed.stamp(pod.object);
    this.feed.publish('DELETED', 'pods', pod.namespace, pod.object);
  }

  /**
   * The pods the API holds, then those deleted since the start (phase 'Deleted'). `isolated`: for a pod the API
   * holds, the policies cut it off now and did whenever a container of it ran; for a deleted one, whenever a
   * container of it ran (or, if none ever did, when it was deleted).
   */
  summaries(): PodSummary[] {
    const live = [...this.pods.values()].map((pod) => summary(pod, pod.phase(), !pod.exposed && this.isolatedNow(pod)));
    const gone = this.deletedPods.map((pod) => summary(pod, 'Deleted', pod.ran ? !pod.exposed : pod.isolatedWhenRemoved));
    return [...live, ...gone];
  }

  /** Whether a container of the pod runs at a moment no policy cuts it off (a policy made after the pod, or removed under it). */
  noteExposure(pod: PodRecord): void {
    if (!pod.containers.some((container) => 'running' in container.state)) return;
    pod.ran = true;
    if (!this.isolatedNow(pod)) pod.exposed = true;
  }

  /** Keeps a clean-up going after the answer; settle() waits for it and reports what failed. */
  inBackground(work: Promise<void>): Promise<void> {
    const tracked = work.catch((error: unknown) => void this.failures.push(error)).finally(() => this.background.delete(tracked));
    this.background.add(tracked);
    return tracked;
  }

  async settle(): Promise<void> {
    while (this.background.size) await Promise.allSettled([...this.background]);
    if (this.failures.length) throw new AggregateError(this.failures, 'the stand-in could not remove everything it made in Docker');
  }

  private isolatedNow(pod: PodRecord): boolean {
    return isolated(pod.labels, this.policiesIn(pod.namespace));
  }
}

function summary(pod: PodRecord, phase: string, isolatedPod: boolean): PodSummary {
  return { name: pod.name, manifest: structuredClone(pod.object), phase, dockerIds: [...pod.dockerIds], isolated: isolatedPod };
}
