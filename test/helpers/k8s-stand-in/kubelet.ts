import { setTimeout as sleep } from 'node:timers/promises';
import { containerConfig } from './container-config.js';
import { ContainerStreams } from './container-streams.js';
import { daemonWords, type DockerCalls, type ImageFacts } from './docker-calls.js';
import { apiTime } from './pod-admission.js';
import type { ContainerRun, PodRecord } from './pod-record.js';
import { setUpVolumes } from './pod-volumes.js';

/**
 * The stand-in's kubelet: runs a pod as Docker containers, the way a node would. Volumes first (with their
 * permissions), then the init containers one after another, then the containers; each container's state goes into
 * the pod's status as it changes (`changed`). A deadline or a deletion stops it starting anything more; teardown
 * leaves no container or volume behind.
 */
export interface KubeletOptions {
  docker: DockerCalls;
  /** Labels every Docker object the stand-in makes, so close() can find what anything left. */
  serverLabel: string;
  podPidsLimit: number;
  seccompRoot: string;
  seccompDefault: boolean;
  /** RuntimeClass name → its handler (a Docker runtime). */
  runtimeHandlers: ReadonlyMap<string, string>;
  /** The pod's status changed: rebuild it, bump the resourceVersion, tell the watchers. */
  changed(pod: PodRecord): void;
}

/** The node every pod lands on. */
export const NODE_NAME = 'asp-stand-in';
/** How long an image pull "fails" before the kubelet backs off (ErrImagePull → ImagePullBackOff). */
const PULL_BACKOFF_MS = 1000;
/** After a kill, how long to wait for Docker to report a container's end before removing it anyway. */
const EXIT_REPORT_MS = 10_000;

export class Kubelet {
  constructor(private readonly options: KubeletOptions) {}

  /** Labels for one of the pod's Docker objects: the pod's own, ownership by the stand-in, and the kubelet's. */
  labels(pod: PodRecord, container?: string): Record<string, string> {
    return {
      ...pod.labels,
      'asp.stand-in': pod.name,
      'asp.stand-in.server': this.options.serverLabel,
      'asp.stand-in.pod-uid': pod.uid,
      'io.kubernetes.pod.name': pod.name,
      'io.kubernetes.pod.namespace': pod.namespace,
      'io.kubernetes.pod.uid': pod.uid,
      ...(container ? { 'io.kubernetes.container.name': container } : {}),
    };
  }

  start(pod: PodRecord): void {
    pod.run = this.runPod(pod);
  }

  private async runPod(pod: PodRecord): Promise<void> {
    // The scheduler binds the pod after the create has been answered, then the kubelet picks it up.
    await sleep(5);
    if (pod.stop.signal.aborted) return;
    if (pod.object.spec) pod.object.spec.nodeName ??= NODE_NAME;
    this.options.changed(pod);
    pod.startTime = apiTime();
    this.armDeadline(pod);
    this.options.changed(pod);
    try {
      await setUpVolumes(this.options.docker, pod, this.labels(pod));
      if (pod.stop.signal.aborted) return;
      pod.sandboxReady = true;
      this.options.changed(pod);
      for (const container of pod.initContainers) {
        if (!(await this.startContainer(pod, container))) return;
        const code = await Promise.race([container.exited, aborted(pod.stop.signal)]);
        if (code !== 0 || pod.stop.signal.aborted) return;
      }
      for (const container of pod.mainContainers) if ('waiting' in container.state) container.state = { waiting: { reason: 'ContainerCreating' } };
      if (pod.initContainers.length) this.options.changed(pod);
      for (const container of pod.mainContainers) {
        if (pod.stop.signal.aborted) return;
        await this.startContainer(pod, container);
      }
    } catch (error) {
      if (pod.stop.signal.aborted) return;
      pod.problem = daemonWords(error);
      for (const container of pod.containers) if ('waiting' in container.state) container.state = { waiting: { reason: container.state.waiting.reason, message: `stand-in: ${pod.problem}` } };
      this.options.changed(pod);
    }
  }

  private armDeadline(pod: PodRecord): void {
    const seconds = pod.object.spec?.activeDeadlineSeconds;
    if (!seconds) return;
    pod.deadline = setTimeout(() => void this.expire(pod), seconds * 1000);
  }

  /** activeDeadlineSeconds passed: the pod fails and everything in it is killed. */
  private async expire(pod: PodRecord): Promise<void> {
    if (pod.finalPhase || pod.stop.signal.aborted) return;
    pod.failure = { reason: 'DeadlineExceeded', message: 'Pod was active on the node longer than the specified deadline' };
    pod.stop.abort();
    this.options.changed(pod);
    await Promise.all(pod.dockerIds.map((id) => this.options.docker.signal(id, 'SIGKILL').catch(() => {})));
  }

  /** Pulls, creates, attaches to and starts one container; false when it did not start (its state says why). */
  private async startContainer(pod: PodRecord, container: ContainerRun): Promise<boolean> {
    const docker = this.options.docker;
    const image = await this.pull(pod, container);
    if (!image || pod.stop.signal.aborted) return false;
    const runtimeClass = pod.object.spec?.runtimeClassName;
    const config = containerConfig({
      pod: pod.object,
      container: container.spec,
      image,
      volumes: pod.volumes,
      labels: this.labels(pod, container.name),
      podPidsLimit: this.options.podPidsLimit,
      seccompRoot: this.options.seccompRoot,
      seccompDefault: this.options.seccompDefault,
      runtimeHandler: runtimeClass ? this.options.runtimeHandlers.get(runtimeClass) : undefined,
    });
    if ('waiting' in config) {
      container.state = { waiting: config.waiting };
      this.options.changed(pod);
      return false;
    }
    let id: string;
    try {
      id = await docker.create(`k8s_${container.name}_${pod.name}_${pod.namespace}_${pod.uid}_0`, config.body);
    } catch (error) {
      container.state = { waiting: { reason: 'CreateContainerError', message: daemonWords(error) } };
      this.options.changed(pod);
      return false;
    }
    pod.dockerIds.push(id);
    container.dockerId = id;
    container.imageId = image.id;
    if (pod.stop.signal.aborted) return false;
    container.streams = new ContainerStreams(await docker.attach(id), container.spec.stdinOnce ?? false);
    if (pod.stop.signal.aborted) return false;
    try {
      await docker.start(id);
    } catch (error) {
      // The runtime could not start it (no such executable, say): terminated at once, exit code 128.
      container.terminate({ exitCode: 128, reason: 'StartError', message: daemonWords(error), startedAt: '1970-01-01T00:00:00Z', finishedAt: apiTime(), containerID: `docker://${id}` });
      this.options.changed(pod);
      return false;
    }
    // Stopped while starting: what has just started is killed like the rest.
    if (pod.stop.signal.aborted) await docker.signal(id, 'SIGKILL');
    const end = await docker.end(id);
    container.state = { running: { startedAt: dockerTime(end?.startedAt) ?? apiTime() } };
    container.watch = this.watchExit(pod, container, id);
    this.options.changed(pod);
    return true;
  }

  /**
   * There is no registry behind the stand-in: an image the daemon has is "pulled" (whatever the pull policy), one it
   * lacks fails as a pull from a registry that does not have it would, and never gets better.
   */
  private async pull(pod: PodRecord, container: ContainerRun): Promise<ImageFacts | undefined> {
    const tag = container.spec.image ?? '';
    const image = await this.options.docker.image(tag);
    if (image) return image;
    if (container.spec.imagePullPolicy === 'Never') {
      container.state = { waiting: { reason: 'ErrImageNeverPull', message: `Container image "${tag}" is not present with pull policy of Never` } };
      this.options.changed(pod);
      return undefined;
    }
    const reference = qualifiedReference(tag);
    container.state = {
      waiting: {
        reason: 'ErrImagePull',
        message: `rpc error: code = NotFound desc = failed to pull and unpack image "${reference}": failed to resolve reference "${reference}": pull access denied, repository does not exist or may require authorization: image "${tag}" not found (the stand-in has no registry)`,
      },
    };
    this.options.changed(pod);
    if (!(await pause(PULL_BACKOFF_MS, pod.stop.signal))) return undefined;
    container.state = { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${tag}"` } };
    this.options.changed(pod);
    return undefined;
  }

  /** Waits for the container to stop and records how it ended. */
  private async watchExit(pod: PodRecord, container: ContainerRun, id: string): Promise<void> {
    const docker = this.options.docker;
    const waited = await docker.wait(id).catch(() => 137);
    if (container.streams) await Promise.race([container.streams.ended, sleep(2000)]);
    const end = await docker.end(id).catch(() => undefined);
    const exitCode = end?.exitCode ?? waited;
    const startedAt = 'running' in container.state ? container.state.running.startedAt : apiTime();
    const fallback = container.spec.terminationMessagePolicy === 'FallbackToLogsOnError' && exitCode !== 0;
    // The kubelet's fallback message: the last 80 lines of the log, at most 2 KiB. (The stand-in mounts no
    // terminationMessagePath file, so a File policy gives no message.)
    const message = fallback ? container.streams?.log.tail(80, 2048) : undefined;
    container.terminate({
      exitCode,
      reason: end?.oomKilled ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error',
      ...(message ? { message } : {}),
      startedAt,
      finishedAt: dockerTime(end?.finishedAt) ?? apiTime(),
      containerID: `docker://${id}`,
    });
    this.options.changed(pod);
  }

  /**
   * Stops the pod and removes everything it had in Docker. With a grace period its running containers get SIGTERM
   * and that long to end (cut short by `pod.hurry`), then SIGKILL, as a kubelet does.
   */
  async teardown(pod: PodRecord, graceSeconds: number): Promise<void> {
    const docker = this.options.docker;
    pod.stop.abort();
    clearTimeout(pod.deadline);
    await pod.run;
    const running = pod.containers.filter((container) => 'running' in container.state && container.dockerId);
    if (graceSeconds > 0 && running.length && !pod.hurry.signal.aborted) {
      await Promise.all(running.map((container) => docker.signal(container.dockerId ?? '', 'SIGTERM')));
      await Promise.race([Promise.all(running.map((container) => container.exited)), pause(graceSeconds * 1000, pod.hurry.signal)]);
    }
    await Promise.all(pod.dockerIds.map((id) => docker.signal(id, 'SIGKILL').catch(() => {})));
    await Promise.race([Promise.all(pod.containers.map((container) => container.watch ?? Promise.resolve())), sleep(EXIT_REPORT_MS)]);
    for (const container of pod.containers) container.streams?.destroy();
    await Promise.all(pod.dockerIds.map((id) => docker.remove(id)));
    await Promise.all([...pod.volumes.values()].map((volume) => docker.removeVolume(volume)));
    // Anything a call in flight made after the lists above were read.
    await docker.sweep(`asp.stand-in.pod-uid=${pod.uid}`);
  }
}

/** Resolves true after `ms`, false as soon as `signal` aborts. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** A promise that never resolves with a value: it resolves (to -1) when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<number> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(-1);
    else signal.addEventListener('abort', () => resolve(-1), { once: true });
  });
}

/** Docker's nanosecond times → the API's seconds; undefined for Docker's zero time. */
function dockerTime(text: string | undefined): string | undefined {
  if (!text || text.startsWith('0001-')) return undefined;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : apiTime(date);
}

/** How containerd names an image reference: `busybox` → `docker.io/library/busybox:latest`. */
function qualifiedReference(tag: string): string {
  const [first, ...rest] = tag.split('/');
  const domain = rest.length && first && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : undefined;
  const path = domain ? rest.join('/') : tag;
  const named = path.includes('/') ? path : `library/${path}`;
  const tagged = /[:@]/.test(named.slice(named.lastIndexOf('/'))) ? named : `${named}:latest`;
  return `${domain ?? 'docker.io'}/${tagged}`;
}
