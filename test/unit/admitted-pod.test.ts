import { describe, expect, it } from 'vitest';
import { limitsSchema } from '../../src/config/task-spec.js';
import { admittedDifferences, admittedPodSchema } from '../../src/k8s/admitted-pod.js';
import { podManifest, type PodInput } from '../../src/k8s/pod-manifest.js';

const input: PodInput = {
  name: 'asp-t1-r1',
  namespace: 'asp',
  image: 'python:3.12',
  runnerImage: 'asp-sandbox:abc',
  injectRuntime: true,
  labels: { 'asp.managed': 'true' },
  limits: limitsSchema.parse({}),
  allowedEnv: { FOO: 'bar' },
  runtime: 'gvisor',
  checkDir: false,
  deadlineMs: 60_000,
  seccomp: { type: 'RuntimeDefault' },
};
const sent = podManifest(input);
/** The pod as an API server stores it unchanged: the same, plus the defaults it fills in. */
const stored = () => {
  const pod = structuredClone(sent) as unknown as { spec: Record<string, unknown> & { containers: Array<Record<string, unknown>>; initContainers: Array<Record<string, unknown>> } };
  pod.spec.serviceAccountName = 'default';
  pod.spec.dnsPolicy = 'ClusterFirst';
  for (const container of [...pod.spec.containers, ...pod.spec.initContainers]) {
    container.terminationMessagePath = '/dev/termination-log';
    container.imagePullPolicy = 'IfNotPresent';
    (container.securityContext as Record<string, unknown>).procMount = 'Default';
  }
  return pod;
};
const differences = (mutate: (pod: ReturnType<typeof stored>) => void) => {
  const pod = stored();
  mutate(pod);
  return admittedDifferences(sent, admittedPodSchema.parse(pod));
};

describe('the pod as the API server stored it', () => {
  it('is accepted as sent, with the defaults a server fills in', () => {
    expect(differences(() => {})).toEqual([]);
  });

  it("refuses what mutating webhooks add: a hostPath socket (Datadog's), an init container and LD_PRELOAD (injectors'), the token back", () => {
    expect(
      differences((pod) => {
        (pod.spec.volumes as unknown[]).push({ name: 'dsdsocket', hostPath: { path: '/var/run/datadog' } });
        (pod.spec.containers[0]!.volumeMounts as unknown[]).push({ name: 'dsdsocket', mountPath: '/var/run/datadog', readOnly: true });
      }),
    ).toEqual([
      'container task: mounts runtime:/opt/asp:ro, tmp:/tmp:rw, workspace:/workspace:rw came back as dsdsocket:/var/run/datadog:ro, runtime:/opt/asp:ro, tmp:/tmp:rw, workspace:/workspace:rw',
      'volume dsdsocket (hostPath) was added',
    ]);
    expect(differences((pod) => pod.spec.initContainers.push({ name: 'vault-agent-init', image: 'vault' }))).toEqual(['init containers asp-runtime came back as asp-runtime,vault-agent-init']);
    expect(differences((pod) => (pod.spec.containers[0]!.env as unknown[]).push({ name: 'LD_PRELOAD', value: '/injected/lib.so' }))).toEqual(['container task: env LD_PRELOAD was added or changed']);
    expect(differences((pod) => (pod.spec.automountServiceAccountToken = true))).toEqual(['automountServiceAccountToken false came back as true']);
  });

  it('refuses a weakened security context, a volume that is no longer an emptyDir, another runtime class, host namespaces', () => {
    expect(differences((pod) => ((pod.spec.containers[0]!.securityContext as Record<string, unknown>).privileged = true))).toEqual([
      'container task: securityContext.privileged false came back as true',
    ]);
    expect(differences((pod) => ((pod.spec.containers[1]!.securityContext as Record<string, unknown>).capabilities = { drop: [] }))).toEqual([
      'container keeper: securityContext.capabilities {"drop":["ALL"]} came back as {"drop":[]}',
    ]);
    expect(differences((pod) => ((pod.spec.volumes as Array<Record<string, unknown>>)[0] = { name: 'workspace', hostPath: { path: '/' } }))).toEqual([
      'volume workspace is hostPath, not the emptyDir asp asked for',
    ]);
    expect(differences((pod) => (pod.spec.runtimeClassName = 'runc'))).toEqual(['runtimeClassName "gvisor" came back as "runc"']);
    expect(differences((pod) => (pod.spec.hostPID = true))).toEqual(['hostPID was turned on']);
    expect(differences((pod) => (pod.spec.containers[0]!.image = 'evil:latest'))).toEqual(['container task: image python:3.12 came back as "evil:latest"']);
    expect(differences((pod) => ((pod.spec.containers[0]!.securityContext as Record<string, unknown>).procMount = 'Unmasked'))).toEqual(['container task: securityContext.procMount is "Unmasked"']);
  });

  it('refuses a field the server dropped', () => {
    expect(differences((pod) => delete (pod.spec.containers[0]!.securityContext as Record<string, unknown>).readOnlyRootFilesystem)).toEqual([
      'container task: securityContext.readOnlyRootFilesystem true came back as null',
    ]);
  });
});
