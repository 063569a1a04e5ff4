import { randomBytes, randomUUID } from 'node:crypto';
import { Pod, type IContainer, type IPod, type IPodSpec, type ISeccompProfile } from 'kubernetes-models/v1';
import { badRequest, cause, forbidden, invalid, RESOURCES, type StatusCause } from './api-status.js';
import { schemaCauses } from './model-validation.js';
import { dnsLabelProblems, dnsSubdomainProblems, envNameProblems, labelKeyProblems, labelValueProblems } from './name-rules.js';
import { parseQuantity } from './quantity.js';

/**
 * What kube-apiserver does to a pod before it is stored: decode and check the schema (kubernetes-models), validate
 * (names, labels, references, requests within limits), run the admission plugins that matter here (RuntimeClass,
 * ServiceAccount's token volume), default, and give it an identity. Beyond the real checks the stand-in refuses what
 * it cannot run faithfully on Docker or will not run on this machine (its policy, each such cause says so).
 */
export interface AdmissionContext {
  namespace: string;
  runtimeClasses: ReadonlySet<string>;
}

/** Where a pod's service-account token is mounted (the ServiceAccount admission plugin). */
export const SERVICE_ACCOUNT_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
/** A stand-in policy note appended to causes of its own. */
const POLICY = 'the stand-in';

export function admitPod(body: unknown, context: AdmissionContext): IPod {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the body of the request was in an unknown format - accepted media types include: application/json');
  const draft = structuredClone(body) as Record<string, unknown> & IPod;
  if (draft.kind !== undefined && draft.kind !== 'Pod') throw badRequest(`Pod in version "v1" cannot be handled as a Pod: the kind in the data (${String(draft.kind)}) is not Pod`);
  if (draft.apiVersion !== undefined && draft.apiVersion !== 'v1') throw badRequest(`the API version in the data (${String(draft.apiVersion)}) does not match the expected API version (v1)`);
  const metadata = (draft.metadata ??= {});
  if (metadata.namespace !== undefined && metadata.namespace !== context.namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
  if (!metadata.name && metadata.generateName) metadata.name = `${metadata.generateName}${randomSuffix()}`;
  const name = metadata.name ?? '';

  const schema = schemaCauses(() => new Pod(draft).validate(), draft);
  if (schema.length) throw invalid(RESOURCES.pods, name, schema);
  const causes = validatePod(draft);
  if (causes.length) throw invalid(RESOURCES.pods, name, causes);

  const runtimeClass = draft.spec?.runtimeClassName;
  if (runtimeClass !== undefined && !context.runtimeClasses.has(runtimeClass)) throw forbidden(RESOURCES.pods, name, `pod rejected: RuntimeClass "${runtimeClass}" not found`);

  const spec = draft.spec as IPodSpec;
  applyDefaults(spec);
  if (spec.automountServiceAccountToken !== false) mountServiceAccountToken(spec);
  delete draft.status;
  draft.apiVersion = 'v1';
  draft.kind = 'Pod';
  draft.metadata = { ...metadata, name, namespace: context.namespace, uid: randomUUID(), creationTimestamp: apiTime() };
  delete draft.metadata.generateName;
  draft.status = { phase: 'Pending', qosClass: qosClass(spec) };
  return draft;
}

/** The API's time format: RFC 3339 to the second. */
export function apiTime(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function randomSuffix(): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  return [...randomBytes(5)].map((byte) => alphabet[byte % alphabet.length]).join('');
}

function validatePod(pod: IPod): StatusCause[] {
  const causes: StatusCause[] = [];
  const metadata = pod.metadata ?? {};
  if (!metadata.name) causes.push(cause.required('metadata.name', 'name or generateName is required'));
  else for (const problem of dnsSubdomainProblems(metadata.name)) causes.push(cause.invalid('metadata.name', metadata.name, problem));
  for (const [key, value] of Object.entries(metadata.labels ?? {})) {
    for (const problem of labelKeyProblems(key)) causes.push(cause.invalid('metadata.labels', key, problem));
    for (const problem of labelValueProblems(value)) causes.push(cause.invalid('metadata.labels', value, problem));
  }
  for (const key of Object.keys(metadata.annotations ?? {})) for (const problem of labelKeyProblems(key)) causes.push(cause.invalid('metadata.annotations', key, problem));

  const spec = pod.spec;
  if (!spec) return [...causes, cause.required('spec')];
  const volumes = new Set<string>();
  for (const [index, volume] of (spec.volumes ?? []).entries()) {
    const field = `spec.volumes[${index}]`;
    for (const problem of dnsLabelProblems(volume.name)) causes.push(cause.invalid(`${field}.name`, volume.name, problem));
    if (volumes.has(volume.name)) causes.push(cause.duplicate(`${field}.name`, volume.name));
    volumes.add(volume.name);
    const sources = Object.keys(volume).filter((key) => key !== 'name');
    if (sources.length !== 1) causes.push(cause.required(field, 'must specify exactly one volume type'));
    else if (!volume.emptyDir) causes.push(cause.forbidden(`${field}.${sources[0]}`, `${POLICY} supports emptyDir volumes only`));
    else if (volume.emptyDir.medium && volume.emptyDir.medium !== 'Memory') causes.push(cause.notSupported(`${field}.emptyDir.medium`, volume.emptyDir.medium, ['', 'Memory']));
  }

  const names = new Set<string>();
  const containers = spec.containers;
  if (!containers.length) causes.push(cause.required('spec.containers'));
  for (const [list, entries] of [
    ['spec.initContainers', spec.initContainers ?? []],
    ['spec.containers', containers],
  ] as const) {
    for (const [index, container] of entries.entries()) {
      const field = `${list}[${index}]`;
      if (names.has(container.name)) causes.push(cause.duplicate(`${field}.name`, container.name));
      names.add(container.name);
      causes.push(...validateContainer(container, field, volumes, list === 'spec.initContainers'));
    }
  }

  const restartPolicy = spec.restartPolicy ?? 'Always';
  if (restartPolicy !== 'Never') causes.push(cause.notSupported('spec.restartPolicy', restartPolicy, ['Never'], `${POLICY} runs a pod's containers once: a sandbox is never restarted`));
  // The stand-in runs every pod on this machine's Docker: never in the host's namespaces, never privileged.
  for (const flag of ['hostNetwork', 'hostPID', 'hostIPC'] as const) if (spec[flag]) causes.push(cause.forbidden(`spec.${flag}`, `${POLICY} runs no pod in the host's namespaces`));
  if (spec.hostUsers === false) causes.push(cause.forbidden('spec.hostUsers', `${POLICY} cannot give a pod a user namespace of its own (Docker's userns-remap is daemon-wide)`));
  if (spec.securityContext?.sysctls?.length) causes.push(cause.forbidden('spec.securityContext.sysctls', `${POLICY} sets no sysctls`));
  if (spec.ephemeralContainers?.length) causes.push(cause.forbidden('spec.ephemeralContainers', 'cannot be set on create'));
  causes.push(...validateSeccomp(spec.securityContext?.seccompProfile, 'spec.securityContext.seccompProfile'));
  if (spec.activeDeadlineSeconds !== undefined && (spec.activeDeadlineSeconds < 1 || spec.activeDeadlineSeconds > 2147483647)) {
    causes.push(cause.invalid('spec.activeDeadlineSeconds', spec.activeDeadlineSeconds, 'must be between 1 and 2147483647, inclusive'));
  }
  return causes;
}

function validateContainer(container: IContainer, field: string, volumes: ReadonlySet<string>, init: boolean): StatusCause[] {
  const causes: StatusCause[] = [];
  for (const problem of dnsLabelProblems(container.name)) causes.push(cause.invalid(`${field}.name`, container.name, problem));
  if (!container.image?.trim()) causes.push(cause.required(`${field}.image`));
  // Attach speaks the channel protocol without a terminal; the kubelet's TTY resize stream is not served.
  if (container.tty) causes.push(cause.forbidden(`${field}.tty`, `${POLICY} runs containers without a TTY`));
  for (const [index, env] of (container.env ?? []).entries()) {
    for (const problem of envNameProblems(env.name)) causes.push(cause.invalid(`${field}.env[${index}].name`, env.name, problem));
    if (env.valueFrom) causes.push(cause.forbidden(`${field}.env[${index}].valueFrom`, `${POLICY} supports env value only`));
  }
  if (container.envFrom?.length) causes.push(cause.forbidden(`${field}.envFrom`, `${POLICY} supports env value only`));
  const paths = new Set<string>();
  for (const [index, mount] of (container.volumeMounts ?? []).entries()) {
    const at = `${field}.volumeMounts[${index}]`;
    if (!volumes.has(mount.name)) causes.push(cause.notFound(`${at}.name`, mount.name));
    if (!mount.mountPath) causes.push(cause.required(`${at}.mountPath`));
    else if (paths.has(mount.mountPath)) causes.push(cause.invalid(`${at}.mountPath`, mount.mountPath, 'must be unique'));
    paths.add(mount.mountPath);
    if (mount.subPath || mount.subPathExpr) causes.push(cause.forbidden(`${at}.subPath`, `${POLICY} mounts whole volumes only (Docker's volume subpath needs Engine API 1.45)`));
  }
  const security = container.securityContext;
  if (security?.privileged) causes.push(cause.forbidden(`${field}.securityContext.privileged`, `${POLICY} runs no privileged container`));
  causes.push(...validateSeccomp(security?.seccompProfile, `${field}.securityContext.seccompProfile`));
  for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle'] as const) {
    if (container[probe]) causes.push(cause.forbidden(`${field}.${probe}`, `${POLICY}'s kubelet runs no probes or lifecycle hooks`));
  }
  if (init && container.restartPolicy) causes.push(cause.forbidden(`${field}.restartPolicy`, `${POLICY} runs no sidecar containers`));
  const limits = container.resources?.limits ?? {};
  for (const [resource, request] of Object.entries(container.resources?.requests ?? {})) {
    const limit = limits[resource];
    const requested = parseQuantity(request);
    const allowed = parseQuantity(limit);
    if (requested !== undefined && allowed !== undefined && requested > allowed) {
      causes.push(cause.invalid(`${field}.resources.requests`, String(request), `must be less than or equal to ${resource} limit of ${String(limit)}`));
    }
  }
  return causes;
}

function validateSeccomp(profile: ISeccompProfile | undefined, field: string): StatusCause[] {
  if (!profile) return [];
  // A sandbox without seccomp is not something the stand-in will run, even when asked.
  if (profile.type === 'Unconfined') return [cause.forbidden(`${field}.type`, `${POLICY} runs no container with seccomp Unconfined`)];
  if (profile.type !== 'Localhost') return profile.localhostProfile ? [cause.forbidden(`${field}.localhostProfile`, 'can only be set when seccomp type is Localhost')] : [];
  const file = profile.localhostProfile;
  if (!file) return [cause.required(`${field}.localhostProfile`, 'must be set when seccomp type is Localhost')];
  if (file.startsWith('/')) return [cause.invalid(`${field}.localhostProfile`, file, 'must be a relative path')];
  if (file.split('/').includes('..')) return [cause.invalid(`${field}.localhostProfile`, file, "must not contain '..'")];
  return [];
}

/** The API server's defaults for the fields the stand-in's kubelet reads (and a few a client may look at). */
function applyDefaults(spec: IPodSpec): void {
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.schedulerName ??= 'default-scheduler';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.securityContext ??= {};
  spec.enableServiceLinks ??= true;
  spec.serviceAccountName ??= 'default';
  spec.serviceAccount = spec.serviceAccountName;
  spec.priority ??= 0;
  spec.preemptionPolicy ??= 'PreemptLowerPriority';
  spec.tolerations ??= [
    { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
    { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
  ];
  for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
    container.terminationMessagePath ??= '/dev/termination-log';
    container.terminationMessagePolicy ??= 'File';
    container.imagePullPolicy ??= pullsAlways(container.image ?? '') ? 'Always' : 'IfNotPresent';
    const resources = (container.resources ??= {});
    // A limit without a request requests the limit.
    if (resources.limits) resources.requests = { ...resources.limits, ...resources.requests };
  }
}

/** `:latest`, or no tag and no digest. */
function pullsAlways(image: string): boolean {
  if (image.includes('@')) return false;
  const last = image.slice(image.lastIndexOf('/') + 1);
  return !last.includes(':') || last.endsWith(':latest');
}

/**
 * The ServiceAccount admission plugin: unless the pod says automountServiceAccountToken: false, every container gets
 * a projected volume with a token, the cluster's CA and the namespace. The stand-in's kubelet fills it with a token
 * that authenticates nobody; on a cluster it is the pod's service account's.
 */
function mountServiceAccountToken(spec: IPodSpec): void {
  const containers = [...(spec.initContainers ?? []), ...spec.containers];
  if (containers.some((container) => (container.volumeMounts ?? []).some((mount) => mount.mountPath === SERVICE_ACCOUNT_MOUNT))) return;
  const name = `kube-api-access-${randomSuffix()}`;
  (spec.volumes ??= []).push({
    name,
    projected: {
      defaultMode: 420,
      sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
      ],
    },
  });
  for (const container of containers) (container.volumeMounts ??= []).push({ name, readOnly: true, mountPath: SERVICE_ACCOUNT_MOUNT });
}

/** Guaranteed when every container's requests equal its limits for cpu and memory; BestEffort when none asks for any. */
function qosClass(spec: IPodSpec): 'Guaranteed' | 'Burstable' | 'BestEffort' {
  const containers = [...(spec.initContainers ?? []), ...spec.containers];
  const asks = (container: IContainer) => Object.keys({ ...container.resources?.requests, ...container.resources?.limits }).some((key) => key === 'cpu' || key === 'memory');
  if (!containers.some(asks)) return 'BestEffort';
  const guaranteed = containers.every((container) =>
    ['cpu', 'memory'].every((resource) => {
      const limit = container.resources?.limits?.[resource];
      const request = container.resources?.requests?.[resource];
      return limit !== undefined && parseQuantity(limit) === parseQuantity(request ?? limit);
    }),
  );
  return guaranteed ? 'Guaranteed' : 'Burstable';
}
