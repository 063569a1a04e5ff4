import type { IContainer, IPod, IPodCondition, IPodStatus } from 'kubernetes-models/v1';
import type { ContainerStreams } from './container-streams.js';
import { apiTime } from './pod-admission.js';

/**
 * A pod as the stand-in's kubelet knows it: the API object, and for each container what it is doing (waiting,
 * running, terminated), its Docker container and its streams. The pod's status is built from this, as a kubelet
 * builds its status from what the runtime reports.
 */
export type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; reason: string; message?: string; startedAt: string; finishedAt: string; containerID?: string } };

export class ContainerRun {
  state: ContainerState;
  dockerId: string | undefined;
  /** The image's Docker id (sha256:...), once pulled. */
  imageId: string | undefined;
  streams: ContainerStreams | undefined;
  /** Resolves once the container has stopped and its end state is recorded. */
  watch: Promise<void> | undefined;
  /** Resolves with the exit code once the container is terminated. */
  readonly exited: Promise<number>;
  private settle: (code: number) => void = () => {};

  constructor(
    readonly spec: IContainer,
    readonly init: boolean,
    waitingReason: string,
  ) {
    this.state = { waiting: { reason: waitingReason } };
    this.exited = new Promise((resolve) => (this.settle = resolve));
  }

  get name(): string {
    return this.spec.name;
  }

  terminate(state: Extract<ContainerState, { terminated: unknown }>['terminated']): void {
    this.state = { terminated: state };
    this.settle(state.exitCode);
  }
}

export type Phase = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

export class PodRecord {
  readonly containers: ContainerRun[];
  /** The pod's volumes: name → the Docker volume holding it. */
  readonly volumes = new Map<string, string>();
  /** Every Docker container made for the pod, the volume set-up helper included while it lives. */
  readonly dockerIds: string[] = [];
  /** Aborted when the pod must stop starting things: its deadline passed, or it is being deleted. */
  readonly stop = new AbortController();
  /** Aborted when a graceful deletion is cut short (a second DELETE with gracePeriodSeconds 0, or close()). */
  readonly hurry = new AbortController();
  startTime: string | undefined;
  sandboxReady = false;
  /** A pod-level end (DeadlineExceeded): the phase is Failed with this reason and message. */
  failure: { reason: string; message: string } | undefined;
  /** Once Succeeded or Failed, a pod stays so. */
  finalPhase: 'Succeeded' | 'Failed' | undefined;
  /** What went wrong setting the pod up, outside any one container (a volume Docker refused). */
  problem: string | undefined;
  deadline: NodeJS.Timeout | undefined;
  run: Promise<void> = Promise.resolve();
  /** Gone from the API (deleted): its status no longer changes what clients see. */
  removed = false;
  deleting: Promise<void> | undefined;
  /** Never bound to a node (the stand-in held it): the API server deletes such a pod at once, whatever the grace. */
  unscheduled = false;
  /** A container of the pod has run. */
  ran = false;
  /** A container of the pod ran while no NetworkPolicy cut it off both ways. */
  exposed = false;
  isolatedWhenRemoved = false;
  private readonly transitions = new Map<string, { status: string; time: string }>();

  constructor(public object: IPod) {
    const spec = object.spec;
    const inits = spec?.initContainers ?? [];
    this.containers = [
      ...inits.map((container) => new ContainerRun(container, true, 'PodInitializing')),
      ...(spec?.containers ?? []).map((container) => new ContainerRun(container, false, inits.length ? 'PodInitializing' : 'ContainerCreating')),
    ];
  }

  get name(): string {
    return this.object.metadata?.name ?? '';
  }

  get namespace(): string {
    return this.object.metadata?.namespace ?? '';
  }

  get uid(): string {
    return this.object.metadata?.uid ?? '';
  }

  get labels(): Record<string, string> {
    return this.object.metadata?.labels ?? {};
  }

  get initContainers(): ContainerRun[] {
    return this.containers.filter((container) => container.init);
  }

  get mainContainers(): ContainerRun[] {
    return this.containers.filter((container) => !container.init);
  }

  get initialized(): boolean {
    return this.initContainers.every((container) => 'terminated' in container.state && container.state.terminated.exitCode === 0);
  }

  /** The kubelet's getPhase for restartPolicy Never, with a pod-level failure and the terminal lock on top. */
  phase(): Phase {
    if (this.finalPhase) return this.finalPhase;
    const phase = this.currentPhase();
    if (phase === 'Succeeded' || phase === 'Failed') this.finalPhase = phase;
    return phase;
  }

  private currentPhase(): Phase {
    if (this.failure) return 'Failed';
    if (!this.object.spec?.nodeName) return 'Pending';
    if (this.initContainers.some((container) => 'terminated' in container.state && container.state.terminated.exitCode !== 0)) return 'Failed';
    if (!this.initialized) return 'Pending';
    const states = this.mainContainers.map((container) => container.state);
    if (states.some((state) => 'waiting' in state)) return 'Pending';
    if (states.some((state) => 'running' in state)) return 'Running';
    return states.every((state) => 'terminated' in state && state.terminated.exitCode === 0) ? 'Succeeded' : 'Failed';
  }

  /** The status a kubelet would report now. */
  status(): IPodStatus {
    const phase = this.phase();
    const base: IPodStatus = { phase, qosClass: this.object.status?.qosClass };
    const scheduled = this.condition('PodScheduled', 'True');
    if (!this.startTime) return { ...base, conditions: this.object.spec?.nodeName ? [scheduled] : [] };
    const terminal = phase === 'Succeeded' || phase === 'Failed';
    const incompleteInits = this.initContainers.filter((container) => !('terminated' in container.state && container.state.terminated.exitCode === 0)).map((container) => container.name);
    const unready = this.mainContainers.filter((container) => !('running' in container.state)).map((container) => container.name);
    const readiness = (type: string) =>
      unready.length
        ? this.condition(type, 'False', terminal ? 'PodCompleted' : 'ContainersNotReady', terminal ? undefined : `containers with unready status: [${unready.join(' ')}]`)
        : this.condition(type, 'True');
    const conditions: IPodCondition[] = [
      this.condition('PodReadyToStartContainers', this.sandboxReady && !terminal ? 'True' : 'False'),
      incompleteInits.length && !terminal
        ? this.condition('Initialized', 'False', 'ContainersNotInitialized', `containers with incomplete status: [${incompleteInits.join(' ')}]`)
        : this.condition('Initialized', 'True', terminal && incompleteInits.length ? 'PodCompleted' : undefined),
      readiness('Ready'),
      readiness('ContainersReady'),
      scheduled,
    ];
    return {
      ...base,
      conditions,
      hostIP: '127.0.0.1',
      hostIPs: [{ ip: '127.0.0.1' }],
      startTime: this.startTime,
      ...(this.failure ? { reason: this.failure.reason, message: this.failure.message } : {}),
      ...(this.initContainers.length ? { initContainerStatuses: this.initContainers.map(containerStatus) } : {}),
      containerStatuses: this.mainContainers.map(containerStatus),
    };
  }

  private condition(type: string, status: 'True' | 'False', reason?: string, message?: string): IPodCondition {
    const seen = this.transitions.get(type);
    if (!seen || seen.status !== status) this.transitions.set(type, { status, time: apiTime() });
    return {
      type,
      status,
      lastTransitionTime: this.transitions.get(type)?.time ?? apiTime(),
      ...(reason ? { reason } : {}),
      ...(message ? { message } : {}),
    };
  }
}

function containerStatus(container: ContainerRun) {
  const running = 'running' in container.state;
  return {
    name: container.name,
    image: container.spec.image ?? '',
    // As a kubelet with Docker's runtime reports it: the repository, then the image's content id.
    imageID: container.imageId ? `docker-pullable://${repository(container.spec.image ?? '')}@${container.imageId}` : '',
    ...(container.dockerId ? { containerID: `docker://${container.dockerId}` } : {}),
    ready: running,
    restartCount: 0,
    started: running,
    state: container.state,
    lastState: {},
  };
}

/** `node:20-bookworm-slim` → `node`, `registry:5000/team/app:1` → `registry:5000/team/app`. */
function repository(image: string): string {
  const digest = image.indexOf('@');
  if (digest !== -1) return image.slice(0, digest);
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  return colon > slash ? image.slice(0, colon) : image;
}
