import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import type { PodManifest } from './pod-manifest.js';

/*
 * The pod as the API server stored it, against the pod asp sent. Admission webhooks mutate pods on their way in
 * (Datadog's adds a hostPath socket to every container, Vault's and others add init containers, volumes and env such
 * as LD_PRELOAD, a policy engine may turn the service-account token back on), and a server drops fields it does not
 * know. The runner's hello proves only its own uid, capabilities, seccomp and no-new-privileges; everything else
 * that decides what the sandbox can reach is read back here, before the pod is attached to, as the Docker backend
 * reads a container back after create.
 */

const container = z.object({
  name: z.string(),
  image: z.string().nullish(),
  command: z.array(z.string()).nullish(),
  args: z.array(z.string()).nullish(),
  env: z.array(z.object({ name: z.string(), value: z.string().nullish(), valueFrom: z.unknown().optional() })).nullish(),
  envFrom: z.array(z.unknown()).nullish(),
  volumeMounts: z.array(z.object({ name: z.string(), mountPath: z.string(), readOnly: z.boolean().nullish(), subPath: z.string().nullish() })).nullish(),
  volumeDevices: z.array(z.unknown()).nullish(),
  securityContext: z.record(z.string(), z.unknown()).nullish(),
  stdin: z.boolean().nullish(),
  tty: z.boolean().nullish(),
});

export const admittedPodSchema = z.object({
  spec: z.object({
    initContainers: z.array(container).nullish(),
    containers: z.array(container),
    ephemeralContainers: z.array(z.unknown()).nullish(),
    volumes: z.array(z.record(z.string(), z.unknown())).nullish(),
    hostNetwork: z.boolean().nullish(),
    hostPID: z.boolean().nullish(),
    hostIPC: z.boolean().nullish(),
    shareProcessNamespace: z.boolean().nullish(),
    automountServiceAccountToken: z.boolean().nullish(),
    runtimeClassName: z.string().nullish(),
    securityContext: z.record(z.string(), z.unknown()).nullish(),
  }),
});

type Admitted = z.infer<typeof admittedPodSchema>;
type AdmittedContainer = z.infer<typeof container>;
type SentContainer = {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value: string }>;
  volumeMounts: Array<{ name: string; mountPath: string; readOnly: boolean }>;
  securityContext: object;
  stdin?: boolean;
};

const json = (value: unknown) => JSON.stringify(value ?? null);

/** Every way the stored pod differs from the sent one where it matters, said for people; empty when it is as sent. */
export function admittedDifferences(sent: PodManifest, admitted: Admitted): string[] {
  const found: string[] = [];
  const spec = admitted.spec;
  const sentInit: SentContainer[] = [...(sent.spec.initContainers ?? [])];
  const sentMain: SentContainer[] = [...sent.spec.containers];
  const names = (list: Array<{ name: string }> | null | undefined) => (list ?? []).map((entry) => entry.name).join(',');
  if (names(spec.initContainers) !== names(sentInit)) found.push(`init containers ${names(sentInit) || 'none'} came back as ${names(spec.initContainers) || 'none'}`);
  if (names(spec.containers) !== names(sentMain)) found.push(`containers ${names(sentMain)} came back as ${names(spec.containers)}`);
  if (spec.ephemeralContainers?.length) found.push(`${spec.ephemeralContainers.length} ephemeral container(s) were added`);
  for (const [wanted, got] of pairs(sentInit, spec.initContainers ?? []).concat(pairs(sentMain, spec.containers))) found.push(...containerDifferences(wanted, got));
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC', 'shareProcessNamespace'] as const) if (spec[field]) found.push(`${field} was turned on`);
  if (spec.automountServiceAccountToken !== false) found.push('automountServiceAccountToken false came back as ' + json(spec.automountServiceAccountToken));
  if ((spec.runtimeClassName ?? undefined) !== ('runtimeClassName' in sent.spec ? sent.spec.runtimeClassName : undefined)) {
    found.push(`runtimeClassName ${json('runtimeClassName' in sent.spec ? sent.spec.runtimeClassName : null)} came back as ${json(spec.runtimeClassName)}`);
  }
  if (!isDeepStrictEqual(spec.securityContext?.seccompProfile, sent.spec.securityContext.seccompProfile))
    found.push(`the pod's seccompProfile came back as ${json(spec.securityContext?.seccompProfile)}`);
  const volumes = spec.volumes ?? [];
  const sentVolumes = new Set(sent.spec.volumes.map((volume) => volume.name));
  for (const volume of volumes) {
    const name = typeof volume.name === 'string' ? volume.name : '?';
    const kinds = Object.keys(volume).filter((key) => key !== 'name');
    if (!sentVolumes.has(name)) found.push(`volume ${name} (${kinds.join(', ')}) was added`);
    else if (kinds.join() !== 'emptyDir') found.push(`volume ${name} is ${kinds.join(', ')}, not the emptyDir asp asked for`);
  }
  if (volumes.length < sentVolumes.size) found.push(`volumes ${[...sentVolumes].join(',')} came back as ${volumes.map((volume) => String(volume.name)).join(',')}`);
  return found;
}

function pairs(sent: SentContainer[], admitted: AdmittedContainer[]): Array<[SentContainer, AdmittedContainer]> {
  return sent.flatMap((wanted): Array<[SentContainer, AdmittedContainer]> => {
    const got = admitted.find((entry) => entry.name === wanted.name);
    return got ? [[wanted, got]] : [];
  });
}

/** The fields of one container that decide what it runs, sees and may do. */
function containerDifferences(wanted: SentContainer, got: AdmittedContainer): string[] {
  const found: string[] = [];
  const where = `container ${wanted.name}`;
  if (got.image !== wanted.image) found.push(`${where}: image ${wanted.image} came back as ${json(got.image)}`);
  if (!isDeepStrictEqual(got.command ?? undefined, wanted.command)) found.push(`${where}: its command was changed`);
  if (!isDeepStrictEqual(got.args ?? undefined, wanted.args)) found.push(`${where}: its args were changed`);
  const env = (got.env ?? []).map((entry) => (entry.valueFrom !== undefined && entry.valueFrom !== null ? `${entry.name}=<valueFrom>` : `${entry.name}=${entry.value ?? ''}`));
  const wantedEnv = (wanted.env ?? []).map((entry) => `${entry.name}=${entry.value}`);
  const added = env.filter((entry) => !wantedEnv.includes(entry)).map((entry) => entry.split('=')[0]);
  const lost = wantedEnv.filter((entry) => !env.includes(entry)).map((entry) => entry.split('=')[0]);
  if (added.length) found.push(`${where}: env ${added.join(', ')} was added or changed`);
  else if (lost.length) found.push(`${where}: env ${lost.join(', ')} was dropped`);
  if (got.envFrom?.length) found.push(`${where}: envFrom was added`);
  if (got.volumeDevices?.length) found.push(`${where}: volume devices were added`);
  const mounts = (got.volumeMounts ?? []).map((mount) => `${mount.name}:${mount.mountPath}:${mount.readOnly ? 'ro' : 'rw'}${mount.subPath ? `:${mount.subPath}` : ''}`).sort();
  const wantedMounts = wanted.volumeMounts.map((mount) => `${mount.name}:${mount.mountPath}:${mount.readOnly ? 'ro' : 'rw'}`).sort();
  if (mounts.join() !== wantedMounts.join()) found.push(`${where}: mounts ${wantedMounts.join(', ')} came back as ${mounts.join(', ') || 'none'}`);
  const context = got.securityContext ?? {};
  for (const [key, value] of Object.entries(wanted.securityContext)) {
    if (!isDeepStrictEqual(context[key], value)) found.push(`${where}: securityContext.${key} ${json(value)} came back as ${json(context[key])}`);
  }
  if (context.procMount !== undefined && context.procMount !== null && context.procMount !== 'Default') found.push(`${where}: securityContext.procMount is ${json(context.procMount)}`);
  if (got.tty) found.push(`${where}: tty was turned on`);
  return found;
}
