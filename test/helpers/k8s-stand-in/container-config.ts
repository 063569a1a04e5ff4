import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { IContainer, IPod, ISeccompProfile } from 'kubernetes-models/v1';
import type { DockerContainerBody, ImageFacts } from './docker-calls.js';
import { memoryBytes, nanoCpus } from './quantity.js';

/**
 * One container of a pod as the Docker container a kubelet with a Docker runtime would make: its command and args,
 * env, user, security context (the container's over the pod's), limits and mounts. A container the kubelet would not
 * create comes back as the waiting state it would report instead.
 */
export interface ConfigInput {
  pod: IPod;
  container: IContainer;
  image: ImageFacts;
  /** The pod's volumes: name → the Docker volume that holds it. */
  volumes: ReadonlyMap<string, string>;
  labels: Record<string, string>;
  podPidsLimit: number;
  seccompRoot: string;
  /** The kubelet's --seccomp-default: a container that names no profile gets RuntimeDefault rather than none. */
  seccompDefault: boolean;
  /** The RuntimeClass's handler (a Docker runtime such as runsc). */
  runtimeHandler: string | undefined;
}

export type ContainerConfig = { body: DockerContainerBody } | { waiting: { reason: 'CreateContainerConfigError' | 'CreateContainerError'; message: string } };

/** Every pod sees the API server's service in its environment (the kubelet adds it); this one has none to reach. */
const SERVICE_ENV: Array<[string, string]> = [
  ['KUBERNETES_SERVICE_HOST', '10.96.0.1'],
  ['KUBERNETES_SERVICE_PORT', '443'],
  ['KUBERNETES_SERVICE_PORT_HTTPS', '443'],
  ['KUBERNETES_PORT', 'tcp://10.96.0.1:443'],
];

export function containerConfig(input: ConfigInput): ContainerConfig {
  const { pod, container, image } = input;
  const podSecurity = pod.spec?.securityContext ?? {};
  const security = container.securityContext ?? {};
  const runAsUser = security.runAsUser ?? podSecurity.runAsUser;
  const runAsGroup = security.runAsGroup ?? podSecurity.runAsGroup;
  const runAsNonRoot = security.runAsNonRoot ?? podSecurity.runAsNonRoot;
  const who = `(pod: "${podFormat(pod)}", container: ${container.name})`;

  const refusal = runAsNonRoot ? nonRootRefusal(runAsUser, image.user, who) : undefined;
  if (refusal) return { waiting: { reason: 'CreateContainerConfigError', message: refusal } };

  const seccomp = seccompOption(security.seccompProfile ?? podSecurity.seccompProfile, input, container.name);
  if ('error' in seccomp) return { waiting: { reason: 'CreateContainerError', message: seccomp.error } };

  const env = environment(container);
  const expand = (text: string) => expandVariables(text, env);
  const command = container.command?.length ? container.command.map(expand) : undefined;
  const args = container.args?.length ? container.args.map(expand) : undefined;
  const limits = container.resources?.limits ?? {};
  const memory = memoryBytes(limits.memory);
  const groups = [...(podSecurity.supplementalGroups ?? []), ...(podSecurity.fsGroup !== undefined ? [podSecurity.fsGroup] : [])].map(String);
  const strip = (capability: string) => capability.replace(/^CAP_/, '');
  const mounts = (container.volumeMounts ?? []).map((mount) => {
    const source = input.volumes.get(mount.name);
    if (!source) throw new Error(`volume ${mount.name} of pod ${pod.metadata?.name ?? ''} was not set up`);
    // NoCopy: a kubelet never copies the image's files into a volume; Docker would for a fresh one.
    return { Type: 'volume' as const, Source: source, Target: mount.mountPath, ReadOnly: mount.readOnly ?? false, VolumeOptions: { NoCopy: true as const } };
  });

  const body: DockerContainerBody = {
    Image: container.image ?? '',
    // command replaces the image's ENTRYPOINT, args its CMD; Docker keeps the image's for what is left out.
    Entrypoint: command,
    Cmd: args,
    Env: [...env].map(([name, value]) => `${name}=${value}`),
    User: dockerUser(runAsUser, runAsGroup, image.user),
    WorkingDir: container.workingDir ?? '',
    Hostname: (pod.spec?.hostname ?? pod.metadata?.name ?? '').slice(0, 63),
    Labels: input.labels,
    AttachStdin: container.stdin ?? false,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: container.stdin ?? false,
    StdinOnce: container.stdinOnce ?? false,
    Tty: false,
    NetworkDisabled: true,
    HostConfig: {
      // Never a network: on a cluster the CNI plugin and NetworkPolicy decide what a pod reaches; here nothing.
      NetworkMode: 'none',
      ReadonlyRootfs: security.readOnlyRootFilesystem ?? false,
      CapDrop: (security.capabilities?.drop ?? []).map(strip),
      CapAdd: (security.capabilities?.add ?? []).map(strip),
      SecurityOpt: [...(security.allowPrivilegeEscalation === false ? ['no-new-privileges'] : []), ...seccomp.options],
      Privileged: false,
      // A pod has no init process of its own unless its containers share one PID namespace (then the pause process reaps).
      Init: pod.spec?.shareProcessNamespace ?? false,
      // The kubelet's podPidsLimit.
      PidsLimit: input.podPidsLimit,
      // The kubelet runs without swap: the memory limit is the whole of it.
      Memory: memory,
      MemorySwap: memory,
      NanoCpus: nanoCpus(limits.cpu),
      // ephemeral-storage limits are not enforced: a kubelet evicts a pod over them, the stand-in does not watch.
      IpcMode: 'private',
      GroupAdd: groups,
      LogConfig: { Type: 'json-file', Config: { 'max-size': '10m' } },
      Mounts: mounts,
      ...(input.runtimeHandler ? { Runtime: input.runtimeHandler } : {}),
    },
  };
  return { body };
}

/** How the kubelet names a pod in messages: name_namespace(uid). */
export function podFormat(pod: IPod): string {
  return `${pod.metadata?.name ?? ''}_${pod.metadata?.namespace ?? ''}(${pod.metadata?.uid ?? ''})`;
}

/** The kubelet's verifyRunAsNonRoot: an image without a user runs as root; a user by name cannot be checked. */
function nonRootRefusal(runAsUser: number | undefined, imageUser: string, who: string): string | undefined {
  if (runAsUser !== undefined) return runAsUser === 0 ? `container's runAsUser breaks non-root policy ${who}` : undefined;
  const user = imageUser.split(':')[0] ?? '';
  if (user === '' || user === '0') return `container has runAsNonRoot and image will run as root ${who}`;
  if (!/^\d+$/.test(user)) return `container has runAsNonRoot and image has non-numeric user (${user}), cannot verify user is non-root ${who}`;
  return undefined;
}

/** runAsUser/runAsGroup over the image's USER; what is not set comes from the image (its user's group from its passwd). */
function dockerUser(runAsUser: number | undefined, runAsGroup: number | undefined, imageUser: string): string {
  const user = runAsUser !== undefined ? String(runAsUser) : imageUser.split(':')[0] || (runAsGroup !== undefined ? '0' : '');
  if (runAsGroup !== undefined) return `${user}:${runAsGroup}`;
  return runAsUser !== undefined ? user : imageUser;
}

/**
 * RuntimeDefault is Docker's own default profile (nothing to add); Localhost reads the kubelet's seccomp root;
 * nothing named is what a kubelet without --seccomp-default does: no seccomp at all.
 */
function seccompOption(profile: ISeccompProfile | undefined, input: ConfigInput, container: string): { options: string[] } | { error: string } {
  const type = profile?.type ?? (input.seccompDefault ? 'RuntimeDefault' : 'Unconfined');
  if (type === 'RuntimeDefault') return { options: [] };
  if (type === 'Unconfined') return { options: ['seccomp=unconfined'] };
  const file = path.join(input.seccompRoot, profile?.localhostProfile ?? '');
  const failed = (why: string) => ({ error: `failed to generate security options for container "${container}": failed to generate seccomp security options for container: ${why}` });
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return failed(`cannot load seccomp profile "${file}": open ${file}: ${error instanceof Error && 'code' in error && error.code === 'ENOENT' ? 'no such file or directory' : String(error)}`);
  }
  try {
    return { options: [`seccomp=${JSON.stringify(JSON.parse(text))}`] };
  } catch (error) {
    return failed(`decoding seccomp profile failed "${file}": ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** The kubelet's environment: the service variables, then the container's own, each value expanded as it goes. */
function environment(container: IContainer): Map<string, string> {
  const env = new Map<string, string>(SERVICE_ENV);
  for (const entry of container.env ?? []) env.set(entry.name, expandVariables(entry.value ?? '', env));
  return env;
}

/**
 * The kubelet's $(VAR) expansion in command, args and env values: a defined variable is replaced, an undefined
 * reference is left as written, and `$$` is always `$` (so `$$` in a shell script handed over as args arrives as `$`).
 */
export function expandVariables(input: string, env: ReadonlyMap<string, string>): string {
  let output = '';
  for (let cursor = 0; cursor < input.length; cursor += 1) {
    const character = input[cursor];
    const next = input[cursor + 1];
    if (character !== '$' || next === undefined) {
      output += character;
      continue;
    }
    if (next === '$') {
      output += '$';
      cursor += 1;
    } else if (next === '(') {
      const close = input.indexOf(')', cursor + 2);
      if (close === -1) {
        output += '$(';
        cursor += 1;
      } else {
        const name = input.slice(cursor + 2, close);
        output += env.get(name) ?? `$(${name})`;
        cursor = close;
      }
    } else {
      output += `$${next}`;
      cursor += 1;
    }
  }
  return output;
}
