import { z } from 'zod';
import { AspError } from '../core/asp-error.js';
import { RUNTIME_CONTAINER } from './pod-manifest.js';

const containerStatus = z.object({
  name: z.string(),
  imageID: z.string().nullish(),
  state: z
    .object({
      waiting: z.object({ reason: z.string().nullish(), message: z.string().nullish() }).nullish(),
      running: z.object({ startedAt: z.string().nullish() }).nullish(),
      terminated: z.object({ exitCode: z.number(), reason: z.string().nullish(), message: z.string().nullish() }).nullish(),
    })
    .nullish(),
});

const objectMeta = z.object({
  name: z.string().nullish(),
  resourceVersion: z.string().nullish(),
  creationTimestamp: z.string().nullish(),
  labels: z.record(z.string(), z.string()).nullish(),
  annotations: z.record(z.string(), z.string()).nullish(),
});

/** What asp reads of a pod the API server returns. */
export const podSchema = z.object({
  metadata: objectMeta.nullish(),
  status: z
    .object({
      phase: z.string().nullish(),
      reason: z.string().nullish(),
      message: z.string().nullish(),
      conditions: z.array(z.object({ type: z.string().nullish(), status: z.string().nullish(), reason: z.string().nullish(), message: z.string().nullish() })).nullish(),
      initContainerStatuses: z.array(containerStatus).nullish(),
      containerStatuses: z.array(containerStatus).nullish(),
    })
    .nullish(),
});
export const podListSchema = z.object({ metadata: z.object({ resourceVersion: z.string().nullish() }).nullish(), items: z.array(podSchema).nullish() });

export type Pod = z.infer<typeof podSchema>;
export type ContainerStatus = z.infer<typeof containerStatus>;

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
      return new AspError(
        'K8S_FAILED',
        `the kubelet cannot start ${status.name} in pod ${name} (${waiting.reason}${waiting.message ? `: ${oneLine(waiting.message)}` : ''})`,
        'kubectl describe pod says more; a Localhost seccomp profile must exist on every node',
      );
    }
  }
  const runtime = (pod.status?.initContainerStatuses ?? []).find((status) => status.name === RUNTIME_CONTAINER)?.state?.terminated;
  if (runtime && runtime.exitCode !== 0) {
    return new AspError(
      'K8S_FAILED',
      `copying asp's runtime into pod ${name} failed (exit ${runtime.exitCode}${runtime.message ? `: ${oneLine(runtime.message)}` : ''})`,
      'check that ASP_K8S_IMAGE is asp’s sandbox image (asp image build)',
    );
  }
  const phase = pod.status?.phase;
  if (phase === 'Failed' || phase === 'Succeeded') {
    const running = statuses.some((status) => status.state?.running || status.state?.terminated);
    if (!running) return new AspError('K8S_FAILED', `pod ${name} ended before it started (${pod.status?.reason ?? phase}${pod.status?.message ? `: ${oneLine(pod.status.message)}` : ''})`);
  }
  return undefined;
}

/**
 * A pod name from asp's sandbox name. Task ids may hold '.', '_' and runs of them ("a..b", "v1.2."), which a DNS
 * subdomain may not have side by side: every run of anything but a letter or a digit becomes one '-' (a DNS-1123
 * label's alphabet), at most 253 characters, alphanumeric at both ends.
 */
export function podName(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, 253);
  return cleaned.replace(/^-+/, '').replace(/-+$/, '') || 'asp';
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, 300);
}
