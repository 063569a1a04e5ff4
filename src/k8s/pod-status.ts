import { AspError } from '../core/asp-error.js';
import { RUNTIME_CONTAINER } from './pod-manifest.js';

/** What asp reads of a pod the API server returns. */
export interface Pod {
  metadata?: { name?: string; resourceVersion?: string; creationTimestamp?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    conditions?: Array<{ type?: string; status?: string; reason?: string; message?: string }>;
    initContainerStatuses?: ContainerStatus[];
    containerStatuses?: ContainerStatus[];
  };
}

export interface ContainerStatus {
  name: string;
  imageID?: string;
  state?: {
    waiting?: { reason?: string; message?: string };
    running?: { startedAt?: string };
    terminated?: { exitCode: number; reason?: string; message?: string };
  };
}

/** One container's state in a pod's status; all undefined before the kubelet reports it. */
export function containerState(pod: Pod, name: string): { status: ContainerStatus | undefined } & NonNullable<ContainerStatus['state']> {
  const status = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find((entry) => entry.name === name);
  return { status, ...(status?.state ?? {}) };
}

/** Reasons a container waits that it never recovers from by itself: the task ends as infrastructure at once. */
const PULL_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull', 'RegistryUnavailable']);
const CONFIG_FAILURES = new Set(['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError', 'PreCreateHookError', 'PostStartHookError']);

/** Why a pod that has not started never will, or undefined while it may still start. */
export function startFailure(pod: Pod, name: string): AspError | undefined {
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  for (const status of statuses) {
    const waiting = status.state?.waiting;
    if (waiting?.reason && PULL_FAILURES.has(waiting.reason)) {
      return new AspError(
        'IMAGE_UNAVAILABLE',
        `the cluster cannot pull the image of ${status.name} in pod ${name} (${waiting.reason}${waiting.message ? `: ${oneLine(waiting.message)}` : ''})`,
        'push the image to a registry the cluster pulls from (on kind: kind load docker-image IMAGE), or set ASP_K8S_IMAGE to asp’s image as the cluster knows it',
      );
    }
    if (waiting?.reason && CONFIG_FAILURES.has(waiting.reason)) {
      return new AspError('K8S_FAILED', `the kubelet cannot start ${status.name} in pod ${name} (${waiting.reason}${waiting.message ? `: ${oneLine(waiting.message)}` : ''})`, 'kubectl describe pod says more; a Localhost seccomp profile must exist on every node');
    }
  }
  const runtime = (pod.status?.initContainerStatuses ?? []).find((status) => status.name === RUNTIME_CONTAINER)?.state?.terminated;
  if (runtime && runtime.exitCode !== 0) {
    return new AspError('K8S_FAILED', `copying asp's runtime into pod ${name} failed (exit ${runtime.exitCode}${runtime.message ? `: ${oneLine(runtime.message)}` : ''})`, 'check that ASP_K8S_IMAGE is asp’s sandbox image (asp image build)');
  }
  const phase = pod.status?.phase;
  if (phase === 'Failed' || phase === 'Succeeded') {
    const running = statuses.some((status) => status.state?.running || status.state?.terminated);
    if (!running) return new AspError('K8S_FAILED', `pod ${name} ended before it started (${pod.status?.reason ?? phase}${pod.status?.message ? `: ${oneLine(pod.status.message)}` : ''})`);
  }
  return undefined;
}

/** A pod name from asp's sandbox name: a DNS subdomain (lower case, digits, '-', '.'), at most 253, alphanumeric at both ends. */
export function podName(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .slice(0, 253);
  return cleaned.replace(/^[^a-z0-9]+/, '').replace(/[^a-z0-9]+$/, '') || 'asp';
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, 300);
}
