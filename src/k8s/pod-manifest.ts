import type { Limits } from '../config/task-spec.js';
import { RUNNER_CAPABILITIES, runnerLaunch, type RunnerLaunch } from '../backend/sandbox-policy.js';
import { SANDBOX_ARTIFACTS_DIR, SANDBOX_CHECK_DIR, SANDBOX_RUNTIME_DIR, SANDBOX_WORKSPACE } from '../protocol/messages.js';
import { podMetadata } from './k8s-labels.js';

/*
 * The pod every task runs in on Kubernetes: the Docker container of src/docker/container-spec.ts, field for field,
 * in a pod's words. Every field is asserted by test/unit/pod-manifest.test.ts and validated against the API's schemas.
 */

/** The task container's name: the one asp attaches to. */
export const TASK_CONTAINER = 'task';
/** The sidecar that hands `.asp/` back when the protocol stream did not bring it (see `keeperContainer`). */
export const KEEPER_CONTAINER = 'keeper';
/** The init container that copies the runner's runtime into the pod, for an image that is not asp's own. */
export const RUNTIME_CONTAINER = 'asp-runtime';
/** Where asp's own image holds the runtime (the Dockerfile's asp-runtime-pack), copied from by `RUNTIME_CONTAINER`. */
const RUNTIME_IN_IMAGE = '/opt/asp-runtime';
/** The keeper's uid: the steps' own (it reads what they wrote, as the runner's tar does), in a PID namespace of its own. */
const KEEPER_USER = 1000;
/** How big the runtime is allowed to be in the pod (it is ~120 MB). */
const RUNTIME_SIZE = '512Mi';
/** A pod's grace after a delete: the runner forwards nothing, so the kubelet's SIGKILL follows quickly (Docker's StopTimeout). */
const GRACE_SECONDS = 2;
/** What the pod's deadline adds to the task's: the host's own deadline (and the runner's backstop) end it first. */
const DEADLINE_GRACE_SECONDS = 60;

export type SeccompChoice = { type: 'Localhost'; localhostProfile: string } | { type: 'RuntimeDefault' };

export interface PodInput {
  name: string;
  namespace: string;
  image: string;
  /** asp's own image, as the cluster pulls it: the runtime comes from it when `image` is another one. */
  runnerImage: string;
  /** Whether `image` needs the runtime injected (it is not asp's own image). */
  injectRuntime: boolean;
  labels: Record<string, string>;
  limits: Limits;
  allowedEnv: Record<string, string>;
  runtime: string | undefined;
  checkDir: boolean;
  /** How long the task may take (ms): the pod ends by itself a minute after that, whoever is watching. */
  deadlineMs: number;
  seccomp: SeccompChoice;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never' | undefined;
}

/** The Kubernetes quantity of a byte count: exact, in the binary suffixes kubectl prints. */
export function byteQuantity(bytes: number): string {
  for (const [suffix, size] of [
    ['Gi', 1024 ** 3],
    ['Mi', 1024 ** 2],
    ['Ki', 1024],
  ] as const) {
    if (bytes % size === 0) return `${bytes / size}${suffix}`;
  }
  return String(bytes);
}

/** CPUs as a Kubernetes quantity: millicores. */
export function cpuQuantity(cpus: number): string {
  return `${Math.max(1, Math.round(cpus * 1000))}m`;
}

const volumeMount = (name: string, mountPath: string, readOnly: boolean) => ({ name, mountPath, readOnly });

/**
 * The hardened pod of one sandbox. No field a user passes can weaken it: the request carries limits, env and the
 * image, never security fields.
 */
export function podManifest(input: PodInput) {
  const { limits } = input;
  const launch = runnerLaunch(input.allowedEnv, input.injectRuntime, ['ASP_HELLO_AFTER_INPUT=1']);
  const resources = {
    cpu: cpuQuantity(limits.cpus),
    memory: byteQuantity(limits.memory),
    // Counts the writable layer, logs and the disk emptyDirs: the workspace's --disk plus room for the rest.
    'ephemeral-storage': byteQuantity(limits.disk + 256 * 1024 ** 2),
  };
  const taskMounts = [
    volumeMount('workspace', SANDBOX_WORKSPACE, false),
    volumeMount('tmp', '/tmp', false),
    ...(input.checkDir ? [volumeMount('check', SANDBOX_CHECK_DIR, false)] : []),
    ...(input.injectRuntime ? [volumeMount('runtime', SANDBOX_RUNTIME_DIR, true)] : []),
  ];
  return {
    apiVersion: 'v1' as const,
    kind: 'Pod' as const,
    metadata: { name: input.name, namespace: input.namespace, ...podMetadata(input.labels) },
    spec: {
      restartPolicy: 'Never' as const,
      activeDeadlineSeconds: Math.ceil(input.deadlineMs / 1000) + DEADLINE_GRACE_SECONDS,
      terminationGracePeriodSeconds: GRACE_SECONDS,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      hostNetwork: false,
      hostPID: false,
      hostIPC: false,
      shareProcessNamespace: false,
      ...(input.runtime ? { runtimeClassName: input.runtime } : {}),
      securityContext: {
        seccompProfile: input.seccomp,
        // No supplementary group from the pod (fsGroup would make the workspace group-owned and chmod it).
        supplementalGroups: [],
      },
      ...(input.injectRuntime ? { initContainers: [runtimeContainer(input)] } : {}),
      containers: [taskContainer(input, launch, resources, taskMounts), keeperContainer(input)] as const,
      volumes: [
        { name: 'workspace', emptyDir: { sizeLimit: byteQuantity(limits.disk) } },
        { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: byteQuantity(limits.tmpfs) } },
        ...(input.checkDir ? [{ name: 'check', emptyDir: { medium: 'Memory', sizeLimit: byteQuantity(limits.tmpfs) } }] : []),
        ...(input.injectRuntime ? [{ name: 'runtime', emptyDir: { sizeLimit: RUNTIME_SIZE } }] : []),
      ],
    },
  };
}

export type PodManifest = ReturnType<typeof podManifest>;

/**
 * What Docker's `Init: true` (tini) does in a container, for a pod, which has no init: a shell as PID 1 that starts
 * the runner with the container's stdin and waits for it. Waiting (dash's wait3 on any child) reaps every process a
 * step orphans, which would otherwise stay a zombie holding a pid; the shell exits with the runner's status. It is
 * asp's image's /bin/sh (dash), or the runtime's own dash through the runtime's loader on any other image.
 */
const REAPER_SCRIPT = 'exec 3<&0; "$@" 0<&3 3<&- & wait $!';

function reaperCommand(input: PodInput, launch: RunnerLaunch): string[] {
  const runner = [...(launch.entrypoint ?? []), ...launch.cmd];
  const dir = SANDBOX_RUNTIME_DIR;
  const shell = input.injectRuntime ? [`${dir}/lib/ld.so`, '--library-path', `${dir}/lib`, `${dir}/bin/sh`] : ['/bin/sh'];
  return [...shell, '-c', REAPER_SCRIPT, 'asp-init', ...runner];
}

/** The runner's container: the one asp attaches to, hardened as the Docker container is. */
function taskContainer(input: PodInput, launch: RunnerLaunch, resources: Record<string, string>, volumeMounts: Array<ReturnType<typeof volumeMount>>) {
  return {
    name: TASK_CONTAINER,
    image: input.image,
    ...(input.imagePullPolicy ? { imagePullPolicy: input.imagePullPolicy } : {}),
    // command replaces the image's ENTRYPOINT, so nothing of the image's runs before the runner.
    command: reaperCommand(input, launch).map(literal),
    env: launch.env.map(envVar),
    workingDir: SANDBOX_WORKSPACE,
    // stdin carries the task, the workspace and model answers; it closes when asp detaches (stdinOnce).
    stdin: true,
    stdinOnce: true,
    tty: false,
    // A runner that dies before its hello leaves its last words here, read without pods/log.
    terminationMessagePolicy: 'FallbackToLogsOnError' as const,
    securityContext: {
      // The runner is root in the container (sandbox-policy.ts says why), holding only its capabilities.
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'], add: RUNNER_CAPABILITIES.map((entry) => entry.cap) },
      seccompProfile: input.seccomp,
    },
    // Requests equal limits: the pod is Guaranteed, never squeezed by its neighbours.
    resources: { requests: resources, limits: resources },
    volumeMounts,
  };
}

/**
 * One variable as a pod spec holds it. The kubelet expands `$(NAME)` in env values and reads `$$` as `$`: every `$`
 * is doubled, so a value (an `--env` secret with a `$(` in it) arrives as it was written.
 */
const envVar = (entry: string) => {
  const at = entry.indexOf('=');
  return { name: entry.slice(0, at), value: literal(entry.slice(at + 1)) };
};

/** A string the kubelet passes on as it is: `$` doubled (command, args and env values are all expanded). */
export function literal(text: string): string {
  return text.replace(/\$/g, () => '$$');
}

/** A non-root, capability-less container of asp's own image, for the runtime copy and the keeper alike. */
function helperSecurity(input: PodInput, uid: number) {
  return {
    runAsUser: uid,
    runAsGroup: uid,
    runAsNonRoot: true,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: input.seccomp,
  };
}

const HELPER_RESOURCES = { cpu: '100m', memory: '64Mi', 'ephemeral-storage': '16Mi' };

/**
 * Copies the runtime (Node, git, tar and their own loader, Dockerfile: asp-runtime-pack) out of asp's image into an
 * emptyDir the task container mounts read-only at /opt/asp: the same runtime the Docker backend's volume holds.
 */
function runtimeContainer(input: PodInput) {
  return {
    name: RUNTIME_CONTAINER,
    image: input.runnerImage,
    ...(input.imagePullPolicy ? { imagePullPolicy: input.imagePullPolicy } : {}),
    // What is in the runtime, not the directory itself: the emptyDir is root's, and its mode is not the copier's to set.
    // (The runtime has no dot files at its top, asp-runtime-pack makes it so.)
    command: ['/bin/sh', '-c', `cd ${RUNTIME_IN_IMAGE} && exec cp -R --preserve=mode,links -- * ${SANDBOX_RUNTIME_DIR}/`],
    terminationMessagePolicy: 'FallbackToLogsOnError' as const,
    securityContext: helperSecurity(input, 65532),
    resources: { requests: { ...HELPER_RESOURCES, memory: '128Mi' }, limits: { ...HELPER_RESOURCES, memory: '128Mi', 'ephemeral-storage': '16Mi' } },
    volumeMounts: [volumeMount('runtime', SANDBOX_RUNTIME_DIR, false)],
  };
}

/**
 * The keeper: asp's image, waiting on its stdin. When the protocol stream did not bring `.asp/` (too big to stream,
 * or the stream broke), asp attaches to it and sends a line; it writes a tar of `.asp/` on its stdout and ends. So
 * the copy-out needs no network in the pod and no verb beyond pods/attach. It reads the workspace read-only, as the
 * steps' uid (what the runner's own tar does), and has no capabilities.
 */
function keeperContainer(input: PodInput) {
  const artifacts = SANDBOX_ARTIFACTS_DIR.slice(SANDBOX_WORKSPACE.length + 1);
  return {
    name: KEEPER_CONTAINER,
    image: input.runnerImage,
    ...(input.imagePullPolicy ? { imagePullPolicy: input.imagePullPolicy } : {}),
    // A file a step made unreadable even to itself (chmod 000) is left out, as it would be of the runner's own stream.
    // As PID 1 it would ignore the kubelet's SIGTERM and hold every pod deletion for the whole grace period: it ends.
    command: ['/bin/sh', '-c', `trap 'exit 143' TERM; read -r _ && exec tar -c -f - --ignore-failed-read -C ${SANDBOX_WORKSPACE} --exclude=${artifacts}/task.json ${artifacts}`],
    stdin: true,
    stdinOnce: true,
    tty: false,
    securityContext: helperSecurity(input, KEEPER_USER),
    // Its tar is written to the node's container log as well as to asp, and logs count against ephemeral storage: the
    // limit holds a whole workspace's worth, or the kubelet would evict the pod in the middle of the copy-out.
    resources: { requests: HELPER_RESOURCES, limits: { ...HELPER_RESOURCES, 'ephemeral-storage': byteQuantity(input.limits.disk + 64 * 1024 ** 2) } },
    volumeMounts: [volumeMount('workspace', SANDBOX_WORKSPACE, true)],
  };
}

/** The name of asp's deny-all policy in a namespace. */
export const NETWORK_POLICY_NAME = 'asp-sandbox-deny-all';

/**
 * Denies every connection into and out of asp's pods (those with `asp.managed=true`): with it enforced, a pod has
 * nothing to talk to but its attach stream, which the kubelet carries, not the pod's network.
 */
export function networkPolicyManifest(namespace: string) {
  return {
    apiVersion: 'networking.k8s.io/v1' as const,
    kind: 'NetworkPolicy' as const,
    metadata: { name: NETWORK_POLICY_NAME, namespace, labels: { 'app.kubernetes.io/managed-by': 'asp' } },
    spec: {
      podSelector: { matchLabels: { 'asp.managed': 'true' } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [],
      egress: [],
    },
  };
}

export type NetworkPolicyManifest = ReturnType<typeof networkPolicyManifest>;

type Maybe<T> = T | null | undefined;

/** Whether a policy the cluster holds denies everything for asp's pods, as `networkPolicyManifest` does. */
export function deniesAll(policy: {
  spec?: Maybe<{
    podSelector?: Maybe<{ matchLabels?: Maybe<Record<string, string>>; matchExpressions?: Maybe<unknown[]> }>;
    policyTypes?: Maybe<string[]>;
    ingress?: Maybe<unknown[]>;
    egress?: Maybe<unknown[]>;
  }>;
}): boolean {
  const spec = policy.spec;
  if (!spec) return false;
  const selector = spec.podSelector ?? {};
  const labels = selector.matchLabels ?? {};
  const selectsAsp = !selector.matchExpressions?.length && Object.entries(labels).every(([key, value]) => key === 'asp.managed' && value === 'true');
  const types = new Set(spec.policyTypes ?? []);
  return selectsAsp && types.has('Ingress') && types.has('Egress') && !spec.ingress?.length && !spec.egress?.length;
}
