import { PassThrough, type Readable } from 'node:stream';
import { z } from 'zod';
import { AspError } from '../core/asp-error.js';
import type { CleanupScope } from '../core/cleanup-stack.js';
import {
  sandboxName,
  type EngineInfo,
  type ImageRequest,
  type OwnedObject,
  type PreparedImage,
  type Sandbox,
  type SandboxBackend,
  type SandboxRequest,
  type SandboxStreams,
} from '../backend/sandbox-backend.js';
import { admittedDifferences, admittedPodSchema } from './admitted-pod.js';
import type { AttachSession } from './attach-stream.js';
import { findKubeTarget } from './kube-config.js';
import { KubeApi } from './kube-api.js';
import { labelSelector, ownershipOfMetadata } from './k8s-labels.js';
import { deniesAll, KEEPER_CONTAINER, NETWORK_POLICY_NAME, networkPolicyManifest, podManifest, RUNTIME_CONTAINER, TASK_CONTAINER, type PodManifest, type SeccompChoice } from './pod-manifest.js';
import { containerState, podListSchema, podName, podSchema, startFailure, type Pod } from './pod-status.js';

export interface KubernetesOptions {
  env: Readonly<Record<string, string | undefined>>;
  /** `--namespace` / ASP_K8S_NAMESPACE; else the context's namespace. */
  namespace?: string | undefined;
  /** ASP_K8S_CONTEXT; else the kubeconfig's current context. */
  context?: string | undefined;
  /** asp's sandbox image as the cluster pulls it (ASP_K8S_IMAGE); the local tag of this asp's image by default. */
  runnerImage: string;
  /** A Localhost seccomp profile the nodes hold (ASP_K8S_SECCOMP_PROFILE, relative to the kubelet's seccomp dir). */
  seccompProfile?: string | undefined;
  timeoutMs: number;
  /** How long a pod may take to start (scheduling, image pull) before the task ends as infrastructure. */
  startTimeoutMs: number;
  /** Said once per process: the pods run under the runtime's default seccomp profile, not asp's. */
  warn: (message: string) => void;
}

/** Every verb asp uses in its namespace (examples/k8s/rbac.yaml grants exactly these). */
export const REQUIRED_PERMISSIONS: ReadonlyArray<{ verb: string; group: string; resource: string; subresource?: string }> = [
  ...['create', 'get', 'list', 'watch', 'delete'].map((verb) => ({ verb, group: '', resource: 'pods' })),
  { verb: 'create', group: '', resource: 'pods', subresource: 'attach' },
  // The attach upgrade is a GET: clusters before 1.30 authorize it as get, later ones as create.
  { verb: 'get', group: '', resource: 'pods', subresource: 'attach' },
  ...['get', 'list', 'create', 'delete'].map((verb) => ({ verb, group: 'networking.k8s.io', resource: 'networkpolicies' })),
];

const versionSchema = z.object({ gitVersion: z.string().nullish(), platform: z.string().nullish() });
const runtimeClassesSchema = z.object({ items: z.array(z.object({ metadata: z.object({ name: z.string().nullish() }).nullish() })).nullish() });
const reviewSchema = z.object({ status: z.object({ allowed: z.boolean().nullish() }).nullish() });
const policySchema = z.object({
  metadata: z.object({ name: z.string().nullish() }).nullish(),
  spec: z
    .object({
      podSelector: z.object({ matchLabels: z.record(z.string(), z.string()).nullish(), matchExpressions: z.array(z.unknown()).nullish() }).nullish(),
      policyTypes: z.array(z.string()).nullish(),
      ingress: z.array(z.unknown()).nullish(),
      egress: z.array(z.unknown()).nullish(),
    })
    .nullish(),
});

const POD_PURPOSE = (verb: 'get' | 'list' | 'watch' | 'create' | 'delete') => ({ verb, resource: 'pods' });
const POLICY_PURPOSE = (verb: 'get' | 'list' | 'create' | 'delete') => ({ verb, resource: 'networkpolicies' });

/**
 * The sandbox backend on a Kubernetes cluster: one pod per sandbox, hardened as the Docker container is (pod-manifest.ts),
 * behind asp's deny-all NetworkPolicy, the task protocol over the task container's attach stream. Nothing in the pod
 * has a network: the workspace goes in, the protocol, model calls and `.asp/` come out, all over attach.
 */
export class KubernetesBackend implements SandboxBackend {
  readonly name = 'k8s';
  readonly sandboxKind = 'pod';
  private connection: Promise<{ api: KubeApi; namespace: string }> | undefined;
  private readonly policies = new Map<string, Promise<void>>();
  private readonly injected = new Map<string, boolean>();
  private seccompWarned = false;

  constructor(private readonly options: KubernetesOptions) {}

  /** The API and the namespace, found once (kubeconfig as kubectl finds it). */
  connect(): Promise<{ api: KubeApi; namespace: string }> {
    this.connection ??= findKubeTarget(this.options.env, this.options.context).then((target) => ({
      api: new KubeApi(target, this.options.timeoutMs),
      namespace: this.options.namespace || target.namespace,
    }));
    return this.connection;
  }

  async ping(): Promise<void> {
    const { api } = await this.connect();
    await api.call('GET', '/version', { verb: 'get', resource: 'version' }, versionSchema);
  }

  async describe(): Promise<EngineInfo> {
    const { api, namespace } = await this.connect();
    const version = await api.call('GET', '/version', { verb: 'get', resource: 'version' }, versionSchema);
    const [os, arch] = (version?.platform ?? 'linux/amd64').split('/');
    // RuntimeClasses are cluster-wide: a namespaced service account may not list them, and then the pod's create says.
    const classes = await api
      .call('GET', '/apis/node.k8s.io/v1/runtimeclasses', { verb: 'list', resource: 'runtimeclasses' }, runtimeClassesSchema)
      .then((list) => (list?.items ?? []).map((item) => item.metadata?.name ?? '').filter(Boolean))
      .catch(() => undefined);
    return {
      endpoint: `${api.server} (namespace ${namespace})`,
      source: api.target.source,
      product: 'kubernetes',
      serverVersion: version?.gitVersion ?? 'unknown',
      apiVersion: 'v1',
      os: os ?? 'linux',
      arch: arch ?? 'amd64',
      runtimes: classes ?? [],
      runtimesUnknown: classes === undefined,
    };
  }

  /**
   * Nothing to build or check on a cluster from here: the kubelet pulls. asp's own image runs as it is; any other
   * image gets the runtime from asp's image by an init container. The image's digest comes from the pod's status.
   */
  prepareImage(request: ImageRequest): Promise<PreparedImage> {
    const ref = request.image ?? this.options.runnerImage;
    this.injected.set(ref, ref !== this.options.runnerImage);
    return Promise.resolve({ ref, id: undefined });
  }

  /** The manifests `createSandbox` would send, for `--dry-run`: no call to the cluster but the kubeconfig read. */
  async manifests(request: SandboxRequest): Promise<{ pod: PodManifest; networkPolicy: ReturnType<typeof networkPolicyManifest> }> {
    const namespace = this.options.namespace || (await this.connect().catch(() => ({ namespace: 'default' }))).namespace;
    return { pod: this.podFor(request, namespace), networkPolicy: networkPolicyManifest(namespace) };
  }

  async createSandbox(request: SandboxRequest, scope: CleanupScope): Promise<Sandbox> {
    const { api, namespace } = await this.connect();
    await this.ensurePolicy(api, namespace);
    const pod = this.podFor(request, namespace);
    const name = pod.metadata.name;
    // Deferred before the create: a create that timed out or failed after the server stored the pod leaves nothing.
    scope.defer(`pod ${name}`, () => deletePod(api, namespace, name), { keepable: true });
    // Strict: a field the server does not know is refused, not dropped. What it stored is read back (admitted-pod.ts).
    const stored = await api.call('POST', `/api/v1/namespaces/${namespace}/pods`, POD_PURPOSE('create'), admittedPodSchema, { body: pod, query: { fieldValidation: 'Strict' } });
    const changed = stored ? admittedDifferences(pod, stored) : ['the API server returned no pod'];
    if (changed.length) {
      await deletePod(api, namespace, name).catch(() => {});
      throw new AspError(
        'HARDENING_IGNORED',
        `the cluster changed the pod asp asked for (${changed.slice(0, 4).join('; ')}${changed.length > 4 ? `; and ${changed.length - 4} more` : ''}): it was removed before anything ran in it`,
        'an admission webhook or policy mutates pods in this namespace: exempt the namespace from it, or give asp a namespace of its own',
      );
    }
    // Checked again once the pod exists, before anything runs in it (no step starts before asp attaches and says
    // start): a reaper that removed the policy between the check above and the create cannot leave this pod open.
    return new KubernetesSandbox(api, namespace, name, this.options.startTimeoutMs, () => this.ensurePolicy(api, namespace));
  }

  async listOwned(labelFilters: string[]): Promise<OwnedObject[]> {
    const { api, namespace } = await this.connect();
    const { selector, rest } = labelSelector(labelFilters);
    const list = await api.call('GET', `/api/v1/namespaces/${namespace}/pods`, POD_PURPOSE('list'), podListSchema, { query: selector ? { labelSelector: selector } : {} });
    return (list?.items ?? [])
      .map((pod): OwnedObject => {
        const name = pod.metadata?.name ?? '';
        const created = pod.metadata?.creationTimestamp;
        return { kind: 'sandbox', ref: name, name, labels: ownershipOfMetadata(pod.metadata), createdAt: created ? new Date(created) : undefined };
      })
      .filter((object) => rest.every(([key, value]) => object.labels[key] === value));
  }

  async removeOwned(object: OwnedObject): Promise<void> {
    const { api, namespace } = await this.connect();
    await deletePod(api, namespace, object.ref);
  }

  /**
   * Which of the verbs asp needs in the namespace the API server would refuse, asked by SelfSubjectAccessReview
   * (which every authenticated user may call): `asp doctor` names them before a task fails on one.
   */
  async missingPermissions(): Promise<string[]> {
    const { api, namespace } = await this.connect();
    const missing: string[] = [];
    for (const need of REQUIRED_PERMISSIONS) {
      const review = await api.call('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', { verb: 'create', resource: 'selfsubjectaccessreviews' }, reviewSchema, {
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SelfSubjectAccessReview',
          spec: { resourceAttributes: { namespace, verb: need.verb, group: need.group, resource: need.resource, ...(need.subresource ? { subresource: need.subresource } : {}) } },
        },
      });
      if (!review?.status?.allowed) missing.push(`${need.verb} ${need.resource}${need.subresource ? `/${need.subresource}` : ''}`);
    }
    // Attach is authorized as one verb or the other depending on the cluster's version: either is enough.
    const attach = ['create pods/attach', 'get pods/attach'];
    const bothMissing = attach.every((verb) => missing.includes(verb));
    return missing.filter((verb) => !attach.includes(verb) || (bothMissing && verb === attach[0]));
  }

  /** The namespace asp would use, and the seccomp profile and runner image its pods get. */
  async placement(): Promise<{ namespace: string; seccomp: string; runnerImage: string }> {
    const { namespace } = await this.connect();
    return {
      namespace,
      seccomp: this.options.seccompProfile ? `Localhost ${this.options.seccompProfile}` : 'RuntimeDefault',
      runnerImage: this.options.runnerImage,
    };
  }

  /** A pod's runtime lives and dies with the pod: there is nothing shared to prune on a cluster. */
  removeStaleRuntimes(): Promise<string[]> {
    return Promise.resolve([]);
  }

  /**
   * Removes asp's NetworkPolicy from the namespace when no pod of asp is left there (`asp reap --backend k8s --all`);
   * its name when it was there. A supervisor that starts a pod later makes it again: it is checked before every pod.
   */
  async removePolicyWhenUnused(options: { dryRun: boolean }): Promise<string | undefined> {
    const { api, namespace } = await this.connect();
    if ((await this.listOwned([])).some((object) => object.labels['asp.managed'] === 'true')) return undefined;
    const path = `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies/${NETWORK_POLICY_NAME}`;
    const existing = await api.call('GET', path, POLICY_PURPOSE('get'), z.unknown(), { allowMissing: true });
    if (!existing) return undefined;
    if (!options.dryRun) {
      await api.call('DELETE', path, POLICY_PURPOSE('delete'), z.unknown(), { allowMissing: true });
      // A supervisor that made a pod meanwhile needs it: made again at once (its own check before start does too).
      if ((await this.listOwned([])).some((object) => object.labels['asp.managed'] === 'true')) {
        await ensureNetworkPolicy(api, namespace);
        return undefined;
      }
    }
    return `${namespace}/${NETWORK_POLICY_NAME}`;
  }

  private podFor(request: SandboxRequest, namespace: string): PodManifest {
    return podManifest({
      name: podName(sandboxName(request)),
      namespace,
      image: request.image,
      runnerImage: this.options.runnerImage,
      injectRuntime: this.injected.get(request.image) ?? request.image !== this.options.runnerImage,
      labels: request.labels,
      limits: request.limits,
      // Not in the pod's spec, which whoever may read pods in the namespace reads: they go over attach (`env`).
      allowedEnv: {},
      runtime: request.runtime,
      checkDir: request.checkDir,
      deadlineMs: request.limits.timeout,
      seccomp: this.seccomp(),
      imagePullPolicy: 'IfNotPresent',
    });
  }

  private seccomp(): SeccompChoice {
    if (this.options.seccompProfile) return { type: 'Localhost', localhostProfile: this.options.seccompProfile };
    if (!this.seccompWarned) {
      this.seccompWarned = true;
      this.options.warn(
        "pods run under the container runtime's default seccomp profile (RuntimeDefault), not asp's own: install asp's profile on the nodes (asp image seccomp-profile) and set ASP_K8S_SECCOMP_PROFILE (README: Kubernetes)",
      );
    }
    return { type: 'RuntimeDefault' };
  }

  /**
   * asp's deny-all NetworkPolicy, made or checked before each pod. A pod never starts without it: a policy of
   * that name that does not deny everything, or RBAC that hides policies, stops the task before any pod exists.
   */
  private ensurePolicy(api: KubeApi, namespace: string): Promise<void> {
    // The tasks of a batch that start together share one check; each later pod checks again (one GET), so a policy
    // removed in the middle of a batch is made again before the next pod, never missing under it.
    let inFlight = this.policies.get(namespace);
    if (!inFlight) {
      inFlight = ensureNetworkPolicy(api, namespace).finally(() => this.policies.delete(namespace));
      this.policies.set(namespace, inFlight);
    }
    return inFlight;
  }
}

async function ensureNetworkPolicy(api: KubeApi, namespace: string): Promise<void> {
  const path = `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies`;
  const check = (policy: Parameters<typeof deniesAll>[0]) => {
    if (!deniesAll(policy)) {
      throw new AspError(
        'K8S_FAILED',
        `the NetworkPolicy ${NETWORK_POLICY_NAME} in namespace ${namespace} does not deny all ingress and egress of asp's pods, so asp will not start a pod there`,
        `delete it (kubectl -n ${namespace} delete networkpolicy ${NETWORK_POLICY_NAME}) and asp makes its own`,
      );
    }
  };
  // Policies add up: one that selects asp's pods and lets anything in or out opens them, whatever asp's says.
  const all = (await api.call('GET', path, POLICY_PURPOSE('list'), z.object({ items: z.array(policySchema).nullish() })))?.items ?? [];
  const opening = all.filter((policy) => policy.metadata?.name !== NETWORK_POLICY_NAME && opensAspPods(policy));
  if (opening.length) {
    const names = opening.map((policy) => policy.metadata?.name ?? '?').join(', ');
    throw new AspError(
      'K8S_FAILED',
      `the NetworkPolicy ${names} in namespace ${namespace} can select asp's pods and allows traffic, which would open them whatever asp's deny-all says, so asp will not start a pod there`,
      `give asp a namespace of its own, or narrow ${names} so that it cannot select pods labelled asp.managed=true`,
    );
  }
  const existing = all.find((policy) => policy.metadata?.name === NETWORK_POLICY_NAME);
  if (existing) return check(existing);
  try {
    await api.call('POST', path, POLICY_PURPOSE('create'), z.unknown(), { body: networkPolicyManifest(namespace) });
  } catch (error) {
    // Another supervisor made it in between: check that one.
    if (!(error instanceof AspError && /answered create networkpolicies with 409/.test(error.message))) throw error;
    const made = await api.call('GET', `${path}/${NETWORK_POLICY_NAME}`, POLICY_PURPOSE('get'), policySchema);
    if (made) check(made);
  }
}

const DELETE_GRACE_SECONDS = 1;
const DELETE_WAIT_MS = 30_000;
const DELETE_POLL_MS = 200;

/** asp's pod labels, for asking whether another policy's selector could pick its pods (task and run vary: any value). */
const ASP_POD_LABELS = new Set(['asp.managed', 'asp.task', 'asp.run', 'asp.keep']);

/** Whether a policy may select asp's pods (an empty selector, labels asp's pods carry, any expression) and allows something. */
function opensAspPods(policy: z.infer<typeof policySchema>): boolean {
  const spec = policy.spec;
  if (!spec) return false;
  const labels = Object.entries(spec.podSelector?.matchLabels ?? {});
  const mayMatch = labels.every(([key, value]) => ASP_POD_LABELS.has(key) && (key !== 'asp.managed' || value === 'true')) || Boolean(spec.podSelector?.matchExpressions?.length);
  return mayMatch && Boolean(spec.ingress?.length || spec.egress?.length);
}

async function deletePod(api: KubeApi, namespace: string, name: string): Promise<void> {
  const path = `/api/v1/namespaces/${namespace}/pods/${name}`;
  const gone = await api.call('DELETE', path, POD_PURPOSE('delete'), z.unknown(), {
    allowMissing: true,
    // A grace of 1 s, not 0: 0 is a force delete, which takes the object away before the kubelet has stopped anything
    // (on a node that is unreachable, never). The runner ignores SIGTERM, so the kubelet's SIGKILL follows in a second.
    query: { gracePeriodSeconds: String(DELETE_GRACE_SECONDS) },
    body: { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: DELETE_GRACE_SECONDS, propagationPolicy: 'Background' },
  });
  if (gone === undefined) return;
  // Done when the kubelet has stopped its containers and the object is gone: nothing of the task outlives it.
  const deadline = performance.now() + DELETE_WAIT_MS;
  while (performance.now() < deadline) {
    if (!(await api.call('GET', path, POD_PURPOSE('get'), z.unknown(), { allowMissing: true }))) return;
    await new Promise((resolve) => setTimeout(resolve, DELETE_POLL_MS));
  }
  throw new AspError(
    'K8S_FAILED',
    `pod ${name} is still terminating ${DELETE_WAIT_MS / 1000} s after asp deleted it`,
    'its node may be unreachable: kubectl describe pod; asp reap --backend k8s deletes it later',
  );
}

/** A watch asks the server to end after this long, and the client ends it 30 s later if the server did not. */
const WATCH_SECONDS = 300;
/** Broken connections in a row before a wait gives up, and the backoff between them (times the count). */
const WATCH_RETRIES = 5;
const WATCH_BACKOFF_MS = 500;

/** How long the keeper may take to send its first bytes, and its container status to say it ended. */
const KEEPER_FIRST_BYTES_MS = 60_000;
const KEEPER_END_MS = 30_000;

/** The WebSocket client (ws, ~35 ms to load) only when a pod is attached to: every other command of asp starts without it. */
const attachStream = () => import('./attach-stream.js');

/** The exit status a sandbox reports when its pod was deleted under it (killed, like a SIGKILLed container). */
const KILLED_STATUS = 137;

class KubernetesSandbox implements Sandbox {
  private attached: AttachSession | undefined;
  private killed = false;
  /** The task container's terminated state as wait() last saw it: its reason says OOMKilled. */
  private terminatedReason: string | undefined;
  readonly envOverProtocol = true;
  /** The task image's digest as the kubelet ran it (`imageID`), once the pod started. */
  imageId: string | undefined;

  constructor(
    private readonly api: KubeApi,
    private readonly namespace: string,
    readonly id: string,
    private readonly startTimeoutMs: number,
    private readonly ensurePolicy: () => Promise<void>,
  ) {}

  async open(signal?: AbortSignal): Promise<SandboxStreams> {
    const pod = await this.until(
      (pod) => {
        const failure = startFailure(pod, this.id);
        if (failure) throw failure;
        const task = containerState(pod, TASK_CONTAINER);
        return task.running || task.terminated ? pod : undefined;
      },
      this.startTimeoutMs,
      false,
      signal,
    );
    const task = containerState(pod, TASK_CONTAINER);
    this.imageId = task.status?.imageID || undefined;
    if (task.terminated) {
      throw new AspError(
        'K8S_FAILED',
        `the runner of pod ${this.id} exited ${task.terminated.exitCode} before asp attached${task.terminated.message ? `: ${lastLine(task.terminated.message)}` : ''}`,
        'run asp doctor --backend k8s',
      );
    }
    await this.ensurePolicy();
    // The runner says nothing before its first input (ASP_HELLO_AFTER_INPUT): attaching after it started loses nothing.
    this.attached = await (await attachStream()).attachContainer(this.api, this.namespace, this.id, TASK_CONTAINER, { stdin: true });
    const session = this.attached;
    const stdin = session.stdin;
    stdin.on('close', () => session.close());
    return { stdout: session.stdout, stderr: session.stderr, stdin };
  }

  async wait(): Promise<number> {
    let deleted = false;
    const pod = await this.until(
      (pod, type) => {
        if (type === 'DELETED') return ((deleted = true), pod);
        const task = containerState(pod, TASK_CONTAINER);
        if (task.terminated) return pod;
        // A pod that ended without its task container running (deadline, eviction) is over too.
        return pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded' ? pod : undefined;
      },
      undefined,
      true,
    );
    if (!pod || deleted) return KILLED_STATUS;
    const terminated = containerState(pod, TASK_CONTAINER).terminated;
    this.terminatedReason = terminated?.reason ?? undefined;
    return terminated?.exitCode ?? KILLED_STATUS;
  }

  oomKilled(): Promise<boolean | undefined> {
    return Promise.resolve(this.terminatedReason === undefined ? undefined : this.terminatedReason === 'OOMKilled');
  }

  /** Deletes the pod (its processes get SIGKILL within DELETE_GRACE_SECONDS): every process of it ends, which is what a kill is. */
  async kill(): Promise<void> {
    this.killed = true;
    this.attached?.close();
    await deletePod(this.api, this.namespace, this.id);
  }

  /**
   * `.asp/` from the keeper: attach, send a line, read its tar. Nothing when the pod is gone (a kill deletes it) or
   * the keeper has nothing to send (no `.asp/` yet). The archive ends cleanly only when the keeper's tar exited 0, as
   * its container status says (a stream that broke off on an entry's boundary would look complete): else it fails.
   */
  async fetchArtifacts(): Promise<Readable | undefined> {
    if (this.killed) return undefined;
    const pod = await this.api.call('GET', `/api/v1/namespaces/${this.namespace}/pods/${this.id}`, POD_PURPOSE('get'), podSchema, { allowMissing: true });
    if (!pod || !containerState(pod, KEEPER_CONTAINER).running) return undefined;
    const keeper = await (await attachStream()).attachContainer(this.api, this.namespace, this.id, KEEPER_CONTAINER, { stdin: true });
    keeper.stdin.on('error', () => {
      /* a keeper gone before it read its line shows in its status below */
    });
    keeper.stdin.end('send\n');
    keeper.stderr.resume();
    // The first chunk, or the end: a keeper that found no `.asp/` writes no tar at all.
    const first = await new Promise<Buffer | undefined | 'silent'>((resolve) => {
      const timer = setTimeout(() => resolve('silent'), KEEPER_FIRST_BYTES_MS);
      keeper.stdout.once('data', (chunk: Buffer) => {
        clearTimeout(timer);
        keeper.stdout.pause();
        resolve(chunk);
      });
      keeper.stdout.once('end', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
    if (first === 'silent') {
      keeper.close();
      throw new AspError('K8S_FAILED', `the keeper of pod ${this.id} sent nothing within ${KEEPER_FIRST_BYTES_MS / 1000} s when asked for .asp/`, 'kubectl describe pod says whether it still runs');
    }
    if (!first) {
      keeper.close();
      return undefined;
    }
    const archive = new PassThrough();
    let bytes = first.length;
    archive.write(first);
    keeper.stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
    keeper.stdout.pipe(archive, { end: false });
    keeper.stdout.once('end', () => {
      void this.keeperExit().then(
        (code) =>
          code === 0
            ? archive.end()
            : archive.destroy(
                new AspError(
                  'K8S_FAILED',
                  `the copy-out of .asp/ from pod ${this.id} broke off after ${bytes} bytes (the keeper's tar ${code === undefined ? 'did not report an end' : `exited ${code}`})`,
                  'run the task again; kubectl describe pod shows the keeper',
                ),
              ),
        (error: unknown) => archive.destroy(error instanceof Error ? error : new Error(String(error))),
      );
    });
    keeper.stdout.resume();
    archive.on('close', () => keeper.close());
    return archive;
  }

  /** The keeper's exit code once its container status says it ended; undefined when that does not come in time. */
  private keeperExit(): Promise<number | undefined> {
    return this.until(
      (pod, type) => {
        if (type === 'DELETED') return { code: undefined };
        const terminated = containerState(pod, KEEPER_CONTAINER).terminated;
        return terminated ? { code: terminated.exitCode } : undefined;
      },
      KEEPER_END_MS,
      true,
    ).then(
      (answer) => answer.code,
      () => undefined,
    );
  }

  /**
   * Watches the pod until `decide` returns something (or throws), reading it first so no change is missed; a watch
   * the server ends (or a client bound ends) is started again. A connection that breaks (an API server restarting, a
   * load balancer's idle cut) is retried with backoff, WATCH_RETRIES times in a row at most: a running pod is not
   * given up for one lost socket. `withinMs` bounds the whole wait; `stop` ends it early (an interrupt); `orGone`
   * makes a deleted pod an answer.
   */
  private async until<T>(decide: (pod: Pod, type: string) => T | undefined, withinMs: number | undefined, orGone = false, stop?: AbortSignal): Promise<T> {
    const abort = new AbortController();
    const timer = withinMs === undefined ? undefined : setTimeout(() => abort.abort(), withinMs);
    const onStop = () => abort.abort();
    stop?.addEventListener('abort', onStop, { once: true });
    if (stop?.aborted) abort.abort();
    const path = `/api/v1/namespaces/${this.namespace}/pods`;
    const gone = () =>
      new AspError('K8S_FAILED', `pod ${this.id} was deleted before it ${withinMs === undefined ? 'ended' : 'started'}`, 'something else deletes asp pods: kubectl get events says what');
    let broken = 0;
    try {
      for (;;) {
        if (abort.signal.aborted) {
          if (stop?.aborted) throw new AspError('K8S_FAILED', `waiting for pod ${this.id} was interrupted`);
          const pod = await this.api.call('GET', `${path}/${this.id}`, POD_PURPOSE('get'), podSchema, { allowMissing: true });
          throw new AspError(
            'K8S_FAILED',
            `pod ${this.id} did not start within ${Math.round((withinMs ?? 0) / 1000)} s${pod ? `: ${pendingReason(pod)}` : ''}`,
            'check the cluster has room and can pull the image (kubectl describe pod), or raise ASP_K8S_START_TIMEOUT',
          );
        }
        let answer: T | undefined;
        let failure: unknown;
        try {
          const current = await this.api.call('GET', `${path}/${this.id}`, POD_PURPOSE('get'), podSchema, { allowMissing: true });
          if (!current) {
            const end = orGone ? decide({ metadata: { name: this.id } }, 'DELETED') : undefined;
            if (end !== undefined) return end;
            throw gone();
          }
          const now = decide(current, 'MODIFIED');
          if (now !== undefined) return now;
          await this.api.watch(
            path,
            { fieldSelector: `metadata.name=${this.id}`, resourceVersion: current.metadata?.resourceVersion ?? '0', timeoutSeconds: String(WATCH_SECONDS) },
            POD_PURPOSE('watch'),
            podSchema,
            (event) => {
              try {
                if (event.type === 'DELETED' && !orGone) throw gone();
                answer = decide(event.object, event.type);
              } catch (error) {
                failure = error;
              }
              return answer !== undefined || failure !== undefined;
            },
            abort.signal,
            (WATCH_SECONDS + 30) * 1000,
          );
          broken = 0;
        } catch (error) {
          if (!(error instanceof AspError && error.code === 'K8S_UNAVAILABLE') || ++broken > WATCH_RETRIES) throw error;
          await new Promise((resolve) => setTimeout(resolve, WATCH_BACKOFF_MS * broken));
          continue;
        }
        if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
        if (answer !== undefined) return answer;
      }
    } finally {
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
    }
  }
}

function pendingReason(pod: Pod): string {
  const unscheduled = pod.status?.conditions?.find((condition) => condition.type === 'PodScheduled' && condition.status === 'False');
  if (unscheduled) return `not scheduled (${unscheduled.reason ?? 'Unschedulable'}: ${lastLine(unscheduled.message ?? '')})`;
  for (const name of [RUNTIME_CONTAINER, TASK_CONTAINER, KEEPER_CONTAINER]) {
    const waiting = containerState(pod, name).waiting;
    if (waiting?.reason) return `${name} is waiting (${waiting.reason}${waiting.message ? `: ${lastLine(waiting.message)}` : ''})`;
  }
  return `phase ${pod.status?.phase ?? 'unknown'}`;
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split('\n')
      .filter((line) => line.trim())
      .pop()
      ?.slice(0, 300) ?? ''
  );
}
