import { describe, expect, it } from 'vitest';
import { Pod } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { limitsSchema } from '../../src/config/task-spec.js';
import { containerSpec } from '../../src/docker/container-spec.js';
import { LABEL, ownershipLabels, parseOwnership } from '../../src/backend/ownership-labels.js';
import { RUNNER_CAPABILITIES } from '../../src/backend/sandbox-policy.js';
import { byteQuantity, cpuQuantity, deniesAll, KEEPER_CONTAINER, literal, networkPolicyManifest, podManifest, RUNTIME_CONTAINER, TASK_CONTAINER, type PodInput } from '../../src/k8s/pod-manifest.js';
import { isLabelValue, labelSelector, ownershipOfMetadata, podMetadata } from '../../src/k8s/k8s-labels.js';
import { podName, startFailure } from '../../src/k8s/pod-status.js';

const limits = limitsSchema.parse({ memory: '1g', cpus: 1.5, pids: 256, timeout: '5m', disk: '2g', tmpfs: '256m' });
const labels = ownershipLabels({ taskId: 't1', runId: 'r1', supervisor: { host: 'ci-host', pid: 42, startTicks: 7 }, expiresAt: new Date('2026-12-01T12:00:00Z'), keep: false });
const base: PodInput = {
  name: 'asp-t1-r1',
  namespace: 'asp',
  image: 'asp-sandbox:abc',
  runnerImage: 'asp-sandbox:abc',
  injectRuntime: false,
  labels,
  limits,
  allowedEnv: { FOO: 'bar', PATH: '/evil' },
  runtime: undefined,
  checkDir: false,
  deadlineMs: limits.timeout,
  seccomp: { type: 'RuntimeDefault' },
};
const pod = podManifest(base);
const [task, keeper] = pod.spec.containers;
const docker = containerSpec({ name: 'asp-t1-r1', image: 'asp-sandbox:abc', volume: 'v', labels, limits, allowedEnv: { FOO: 'bar', PATH: '/evil' } });

describe('pod manifest', () => {
  it('is a valid Pod by the Kubernetes API schema, with the runtime injected or not, with a check dir and a runtime class', () => {
    expect(() => new Pod(pod as never).validate()).not.toThrow();
    const foreign = podManifest({ ...base, image: 'python:3.12', injectRuntime: true, checkDir: true, runtime: 'gvisor', seccomp: { type: 'Localhost', localhostProfile: 'profiles/asp.json' } });
    expect(() => new Pod(foreign as never).validate()).not.toThrow();
  });

  it('the schema check itself refuses a broken pod (so the validation above can fail)', () => {
    const broken = structuredClone(pod) as unknown as { spec: { containers: Array<{ name?: unknown }> } };
    broken.spec.containers[0]!.name = 42;
    expect(() => new Pod(broken as never).validate()).toThrow();
  });

  it('runs the runner as root of the container holding only its four capabilities, as the Docker container does', () => {
    expect(task.securityContext.runAsUser).toBe(0);
    expect(task.securityContext.runAsGroup).toBe(0);
    expect(`${task.securityContext.runAsUser}:${task.securityContext.runAsGroup}`).toBe(docker.User);
    expect(task.securityContext.capabilities).toEqual({ drop: ['ALL'], add: RUNNER_CAPABILITIES.map((entry) => entry.cap) });
    expect(task.securityContext.capabilities.add).toEqual(docker.HostConfig.CapAdd);
  });

  it('forbids new privileges, privileged mode and a writable root, everywhere', () => {
    for (const container of [...pod.spec.containers, ...podManifest({ ...base, injectRuntime: true }).spec.initContainers!]) {
      expect(container.securityContext.allowPrivilegeEscalation, container.name).toBe(false);
      expect(container.securityContext.privileged, container.name).toBe(false);
      expect(container.securityContext.readOnlyRootFilesystem, container.name).toBe(true);
      expect(container.securityContext.capabilities.drop, container.name).toEqual(['ALL']);
    }
  });

  it('names its containers: the task container first, the keeper beside it', () => {
    expect(pod.spec.containers.map((container) => container.name)).toEqual([TASK_CONTAINER, KEEPER_CONTAINER]);
  });

  it('runs the helpers (keeper, runtime copy) as non-root with no capabilities', () => {
    const init = podManifest({ ...base, injectRuntime: true }).spec.initContainers![0]!;
    expect(init.name).toBe(RUNTIME_CONTAINER);
    for (const container of [keeper, init]) {
      expect(container.securityContext.runAsNonRoot, container.name).toBe(true);
      expect(container.securityContext.runAsUser, container.name).toBeGreaterThan(0);
      expect('add' in container.securityContext.capabilities, container.name).toBe(false);
    }
    expect(keeper.volumeMounts).toEqual([{ name: 'workspace', mountPath: '/workspace', readOnly: true }]);
  });

  it('applies the seccomp profile asked for: RuntimeDefault, or asp’s as a Localhost profile', () => {
    expect(pod.spec.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    const local = podManifest({ ...base, seccomp: { type: 'Localhost', localhostProfile: 'profiles/asp.json' } });
    for (const container of local.spec.containers) expect(container.securityContext.seccompProfile).toEqual({ type: 'Localhost', localhostProfile: 'profiles/asp.json' });
  });

  it('mounts no service account token, no service links, no host namespace, never restarts', () => {
    expect(pod.spec.automountServiceAccountToken).toBe(false);
    expect(pod.spec.enableServiceLinks).toBe(false);
    expect(pod.spec.hostNetwork).toBe(false);
    expect(pod.spec.hostPID).toBe(false);
    expect(pod.spec.hostIPC).toBe(false);
    expect(pod.spec.shareProcessNamespace).toBe(false);
    expect(pod.spec.restartPolicy).toBe('Never');
    expect(JSON.stringify(pod)).not.toMatch(/hostPath|docker\.sock|serviceAccountName/);
  });

  it('ends by itself a minute after the task deadline', () => {
    expect(pod.spec.activeDeadlineSeconds).toBe(5 * 60 + 60);
  });

  it('requests what it limits: cpu, memory (no swap on a kubelet) and ephemeral storage from --disk', () => {
    expect(task.resources.requests).toEqual(task.resources.limits);
    expect(task.resources.limits.cpu).toBe('1500m');
    expect(task.resources.limits.memory).toBe('1Gi');
    expect(task.resources.limits['ephemeral-storage']).toBe('2304Mi');
  });

  it('puts the workspace on a sized emptyDir and /tmp on a sized memory emptyDir', () => {
    expect(pod.spec.volumes).toEqual([
      { name: 'workspace', emptyDir: { sizeLimit: '2Gi' } },
      { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '256Mi' } },
    ]);
    expect(task.volumeMounts).toEqual([
      { name: 'workspace', mountPath: '/workspace', readOnly: false },
      { name: 'tmp', mountPath: '/tmp', readOnly: false },
    ]);
  });

  it('carries the protocol on stdin/stdout, never a TTY, and starts the runner with the same env as on Docker plus the hello-after-input switch', () => {
    expect(task.stdin).toBe(true);
    expect(task.stdinOnce).toBe(true);
    expect(task.tty).toBe(false);
    // Under a reaping shell (Docker's Init), which hands the runner the container's stdin.
    expect(task.command).toEqual(['/bin/sh', '-c', 'exec 3<&0; "$$@" 0<&3 3<&- & wait $$!', 'asp-init', ...(docker.Cmd ?? [])]);
    expect(task.env.map((entry) => `${entry.name}=${entry.value}`)).toEqual([...docker.Env, 'ASP_HELLO_AFTER_INPUT=1']);
    expect(task.env.find((entry) => entry.name === 'PATH')?.value).not.toBe('/evil');
  });

  it('passes values as they were written: the kubelet would expand $(NAME) and read $$ as $', () => {
    const dollars = podManifest({ ...base, allowedEnv: { SECRET: 'a$(HOME)b$$c$' } });
    expect(dollars.spec.containers[0].env).toContainEqual({ name: 'SECRET', value: 'a$$(HOME)b$$$$c$$' });
    expect(literal('no dollars')).toBe('no dollars');
  });

  it('injects the runtime into another image by an init container, mounted read-only, and starts the runner from it', () => {
    const foreign = podManifest({ ...base, image: 'python:3.12', injectRuntime: true });
    const init = foreign.spec.initContainers![0]!;
    const [container] = foreign.spec.containers;
    expect(init.image).toBe('asp-sandbox:abc');
    expect(init.command).toEqual(['/bin/sh', '-c', 'cd /opt/asp-runtime && exec cp -R --preserve=mode,links -- * /opt/asp/']);
    expect(container.image).toBe('python:3.12');
    expect(container.volumeMounts).toContainEqual({ name: 'runtime', mountPath: '/opt/asp', readOnly: true });
    const loader = ['/opt/asp/lib/ld.so', '--library-path', '/opt/asp/lib'];
    expect(container.command).toEqual([...loader, '/opt/asp/bin/sh', '-c', 'exec 3<&0; "$$@" 0<&3 3<&- & wait $$!', 'asp-init', ...loader, '/opt/asp/bin/node', '/opt/asp/sandbox/asp-sandbox.cjs']);
    expect(keeper.image).toBe('asp-sandbox:abc');
  });

  it('names the runtime class for --runtime and a read-only-to-steps check dir for a check', () => {
    const checked = podManifest({ ...base, runtime: 'gvisor', checkDir: true });
    expect(checked.spec.runtimeClassName).toBe('gvisor');
    expect(checked.spec.volumes).toContainEqual({ name: 'check', emptyDir: { medium: 'Memory', sizeLimit: '256Mi' } });
    expect(pod.spec).not.toHaveProperty('runtimeClassName');
  });

  it("labels the pod with asp's selectable facts and keeps every fact in annotations", () => {
    expect(pod.metadata.labels).toEqual({ 'asp.managed': 'true', 'asp.task': 't1', 'asp.run': 'r1', 'asp.keep': 'false' });
    expect(pod.metadata.annotations).toEqual(labels);
    expect(ownershipOfMetadata(pod.metadata)).toEqual(labels);
  });

  it("keeps the supervisor's host id as an annotation, so the reaper on Kubernetes tells hosts of one name apart too", () => {
    const hostId = { machine: 'a'.repeat(32), boot: '11111111-1111-4111-8111-111111111111', pidNamespace: '4026531836' };
    const owned = ownershipLabels({ taskId: 't1', runId: 'r1', supervisor: { host: 'ci-host', pid: 42, startTicks: 7, hostId }, expiresAt: new Date('2026-12-01T12:00:00Z'), keep: false });
    const metadata = podMetadata(owned);
    expect(metadata.annotations[LABEL.supervisorHostId]).toBe(`${'a'.repeat(32)}/11111111-1111-4111-8111-111111111111/4026531836`);
    expect(parseOwnership(ownershipOfMetadata(metadata))?.supervisor).toEqual({ host: 'ci-host', pid: 42, startTicks: 7, hostId });
  });
});

describe('network policy', () => {
  const policy = networkPolicyManifest('asp');
  it('is a valid NetworkPolicy that denies all ingress and egress of pods labelled asp.managed=true', () => {
    expect(() => new NetworkPolicy(policy as never).validate()).not.toThrow();
    expect(policy.spec).toEqual({ podSelector: { matchLabels: { 'asp.managed': 'true' } }, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] });
    expect(deniesAll(policy)).toBe(true);
  });

  it('a policy that lets anything through is not taken for asp’s', () => {
    expect(deniesAll({ spec: { ...policy.spec, egress: [{}] } })).toBe(false);
    expect(deniesAll({ spec: { ...policy.spec, policyTypes: ['Ingress'] } })).toBe(false);
    expect(deniesAll({ spec: { ...policy.spec, podSelector: { matchLabels: { app: 'other' } } } })).toBe(false);
    expect(deniesAll({})).toBe(false);
  });
});

describe('quantities, names and labels', () => {
  it('writes quantities exactly', () => {
    expect(byteQuantity(512 * 1024 ** 2)).toBe('512Mi');
    expect(byteQuantity(3 * 1024 ** 3)).toBe('3Gi');
    expect(byteQuantity(1000)).toBe('1000');
    expect(cpuQuantity(0.25)).toBe('250m');
    expect(cpuQuantity(2)).toBe('2000m');
  });

  it('makes pod names DNS subdomains', () => {
    expect(podName('asp-My_Task-r1')).toBe('asp-my-task-r1');
    expect(podName('asp-task.-')).toBe('asp-task');
    // Valid task ids that a DNS subdomain would refuse as they are.
    for (const id of ['a..b', 'fix.-auth', 'v1.2.', 'a._b']) expect(podName(`asp-${id}-mx4-1cd7`)).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
    expect(podName('x'.repeat(300))).toHaveLength(253);
  });

  it('knows a label value from what is not one', () => {
    expect(isLabelValue('ci-host/42/7')).toBe(false);
    expect(isLabelValue('2026-12-01T12:00:00.000Z')).toBe(false);
    expect(isLabelValue('t1')).toBe(true);
    expect(isLabelValue('a'.repeat(64))).toBe(false);
    expect(podMetadata({ 'asp.task': 'task-' }).labels).toEqual({});
  });

  it('selects by what labels can say and leaves the rest to the caller', () => {
    expect(labelSelector(['asp.managed=true', 'asp.supervisor=h/1/2', 'asp.keep'])).toEqual({ selector: 'asp.managed=true,asp.keep', rest: [['asp.supervisor', 'h/1/2']] });
  });
});

describe('pod start failures', () => {
  const waiting = (reason: string, message = '') => ({ status: { phase: 'Pending', containerStatuses: [{ name: 'task', state: { waiting: { reason, message } } }] } });
  it('ends at once on an image the cluster cannot pull, as infrastructure', () => {
    for (const reason of ['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName']) expect(startFailure(waiting(reason, 'not found'), 'p')?.code).toBe('IMAGE_UNAVAILABLE');
  });
  it('ends at once when the kubelet cannot create the container', () => {
    expect(startFailure(waiting('CreateContainerConfigError', 'container has runAsNonRoot and image will run as root'), 'p')?.message).toMatch(/runAsNonRoot/);
  });
  it('waits while it is merely creating', () => {
    expect(startFailure(waiting('ContainerCreating'), 'p')).toBeUndefined();
    expect(startFailure({ status: { phase: 'Pending' } }, 'p')).toBeUndefined();
  });
  it('says when the runtime copy failed', () => {
    expect(
      startFailure({ status: { phase: 'Failed', initContainerStatuses: [{ name: RUNTIME_CONTAINER, state: { terminated: { exitCode: 1, message: 'cp: cannot stat' } } }] } }, 'p')?.message,
    ).toMatch(/copying asp's runtime .* failed \(exit 1: cp: cannot stat\)/);
  });
});
