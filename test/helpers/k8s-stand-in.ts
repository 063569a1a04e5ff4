import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { KubeApi } from './k8s-stand-in/api-server.js';
import type { RecordedRequest } from './k8s-stand-in/cluster-state.js';
import { DockerCalls } from './k8s-stand-in/docker-calls.js';
import { Kubelet } from './k8s-stand-in/kubelet.js';

/**
 * A Kubernetes API server and node in one process, for tests of asp's Kubernetes backend on a machine that cannot
 * run a cluster: the REST API asp uses (pods with watch and attach, NetworkPolicies, RuntimeClasses), checked against
 * the API's schemas and answered in its shapes, and each pod run as real Docker containers with its fields mapped as a
 * kubelet would. Every Docker object it makes is labelled `asp.stand-in=<pod>` (and with the pod's own labels, so
 * asp's leak checks see what a pod left); close() removes them all.
 */
export interface KubeStandIn {
  /** http://127.0.0.1:PORT */
  url: string;
  /** The bearer token every request must carry. */
  token: string;
  /** A kubeconfig with one cluster, user and context (current), whose namespace is `namespace`. */
  kubeconfigPath: string;
  namespace: string;
  /** Every request, in order, for assertions (the body once it has been read). */
  requests: RecordedRequest[];
  /**
   * The pods the API holds, then every pod deleted since the start with phase 'Deleted' (its dockerIds as they were).
   * `isolated`: NetworkPolicies cut the pod off both ways whenever a container of it ran (and, for a pod the API
   * holds, now): a policy made after the pod's containers started, or deleted under them, leaves it false.
   */
  pods(): Array<{ name: string; manifest: any; phase: string; dockerIds: string[]; isolated: boolean }>;
  /**
   * Takes a verb on a resource away (`forbid('create', 'pods/attach')`): 403 with kube-apiserver's message, and a
   * SelfSubjectAccessReview that says not allowed. `forbid(verb, resource, false)` gives it back.
   */
  forbid(verb: string, resource: string, on?: boolean): void;
  /** While on, attach upgrades are answered 400 with a Status, as when the kubelet cannot attach. */
  refuseAttach(on: boolean): void;
  /** Stops scheduling: pods created from now on stay Pending (as on a cluster with no room), until `false`. */
  holdPods(on: boolean): void;
  /** Acts as a mutating admission webhook: `mutate` changes every pod created from now on (undefined: none). */
  mutatePods(mutate: ((pod: Record<string, unknown>) => void) | undefined): void;
  /** Stops every pod, removes all their Docker containers and volumes, closes the server. */
  close(): Promise<void>;
}

export interface KubeStandInOptions {
  /** The kubeconfig's namespace and the service account's (default 'asp'). */
  namespace?: string;
  /** More namespaces that exist. */
  extraNamespaces?: string[];
  /** The kubelet's podPidsLimit (default 4096): each container's PidsLimit. */
  podPidsLimit?: number;
  /** The kubelet's seccomp root, where Localhost profiles are read (default /var/lib/kubelet/seccomp). */
  seccompRoot?: string;
  /**
   * RuntimeClasses that exist: a name whose handler is the same name, or a name and its handler. A handler is the
   * Docker runtime the pod's containers get (`runsc` here; a class named `gvisor` needs `{ name: 'gvisor', handler: 'runsc' }`).
   */
  runtimeClasses?: Array<string | { name: string; handler: string }>;
  /**
   * The kubelet's --seccomp-default (default false, as on most clusters): false runs a container that names no
   * seccomp profile without one, true gives it RuntimeDefault.
   */
  seccompDefault?: boolean;
}

export async function startKubeStandIn(options: KubeStandInOptions = {}): Promise<KubeStandIn> {
  const namespace = options.namespace ?? 'asp';
  const token = `stand-in-${randomBytes(24).toString('hex')}`;
  const serverLabel = randomBytes(6).toString('hex');
  const runtimeClasses = (options.runtimeClasses ?? []).map((entry) => (typeof entry === 'string' ? { name: entry, handler: entry } : entry));
  const api = new KubeApi(token, { namespace, extraNamespaces: options.extraNamespaces ?? [], runtimeClasses });
  const state = api.state;
  const kubelet = new Kubelet({
    docker: DockerCalls.fromEnvironment(process.env),
    serverLabel,
    podPidsLimit: options.podPidsLimit ?? 4096,
    seccompRoot: options.seccompRoot ?? '/var/lib/kubelet/seccomp',
    seccompDefault: options.seccompDefault ?? false,
    runtimeHandlers: new Map(runtimeClasses.map((entry) => [entry.name, entry.handler])),
    changed: (pod) => state.changed(pod),
  });
  state.kubelet = kubelet;

  const server = http.createServer((request, response) => api.handle(request, response));
  server.on('upgrade', (request: http.IncomingMessage, socket, head: Buffer) => api.upgrade(request, socket, head));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-kube-'));
  const kubeconfigPath = path.join(dir, 'config');
  writeFileSync(kubeconfigPath, kubeconfig(url, token, namespace), { mode: 0o600 });

  let closing: Promise<void> | undefined;
  return {
    url,
    token,
    kubeconfigPath,
    namespace,
    requests: state.requests,
    pods: () => state.summaries(),
    forbid: (verb, resource, on) => state.forbid(verb, resource, on),
    refuseAttach: (on) => {
      state.refusingAttach = on;
    },
    holdPods: (on) => {
      state.holdingPods = on;
    },
    mutatePods: (mutate) => {
      state.mutatePod = mutate;
    },
    close: () =>
      (closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        try {
          await api.shutdown();
          // Whatever a pod's teardown could not account for (a crash in between): the label finds it.
          await DockerCalls.fromEnvironment(process.env).sweep(`asp.stand-in.server=${serverLabel}`);
        } finally {
          await stopped;
          rmSync(dir, { recursive: true, force: true });
        }
      })()),
  };
}

function kubeconfig(url: string, token: string, namespace: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: asp-stand-in',
    '  cluster:',
    `    server: ${url}`,
    // Plain HTTP: @kubernetes/client-node sends a token over http:// only to a cluster marked so.
    '    insecure-skip-tls-verify: true',
    'users:',
    '- name: asp-runner',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: asp-stand-in',
    '  context:',
    '    cluster: asp-stand-in',
    '    user: asp-runner',
    `    namespace: ${namespace}`,
    'current-context: asp-stand-in',
    'preferences: {}',
    '',
  ].join('\n');
}
