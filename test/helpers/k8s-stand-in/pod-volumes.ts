import { randomBytes } from 'node:crypto';
import type { DockerCalls, HelperBody } from './docker-calls.js';
import type { PodRecord } from './pod-record.js';

/** The image of the short-lived helper that prepares a pod's volumes (present wherever asp's tests run). */
const HELPER_IMAGE = 'node:20-bookworm-slim';

/**
 * Each of the pod's volumes as a Docker volume of its own. An emptyDir is mode 0777 and owned by root, as a kubelet
 * makes it (with fsGroup: that group, and setgid); the service-account volume holds its token, CA and namespace.
 * A helper container (root, no network) sets them up and is removed.
 */
export async function setUpVolumes(docker: DockerCalls, pod: PodRecord, labels: Record<string, string>): Promise<void> {
  const volumes = pod.object.spec?.volumes ?? [];
  if (!volumes.length) return;
  const mounts: HelperBody['HostConfig']['Mounts'] = [];
  const script: string[] = [];
  const fsGroup = pod.object.spec?.securityContext?.fsGroup;
  for (const [index, volume] of volumes.entries()) {
    const name = `k8s_${volume.name}_${pod.name}_${pod.namespace}_${pod.uid}`;
    await docker.createVolume(name, labels);
    pod.volumes.set(volume.name, name);
    const target = `/v${index}`;
    mounts.push({ Type: 'volume', Source: name, Target: target, ReadOnly: false, VolumeOptions: { NoCopy: true } });
    if (volume.emptyDir) {
      // A Memory emptyDir is a tmpfs on a node; here an ordinary volume, which its containers share all the same.
      // Its sizeLimit is not enforced (a kubelet evicts a pod over it; the stand-in does not watch).
      script.push(`chmod 0777 ${target}`);
      if (fsGroup !== undefined) script.push(`chgrp ${fsGroup} ${target}`, `chmod 2777 ${target}`);
    } else {
      // The token authenticates nobody here; on a cluster it is the pod's service account's.
      const token = `stand-in-token-${randomBytes(16).toString('hex')}`;
      script.push(
        `printf %s ${token} > ${target}/token`,
        `printf %s 'stand-in CA: not a certificate' > ${target}/ca.crt`,
        `printf %s ${pod.namespace} > ${target}/namespace`,
        `chmod 0644 ${target}/token ${target}/ca.crt ${target}/namespace`,
        `chmod 0755 ${target}`,
      );
    }
  }
  const body: HelperBody = {
    Image: HELPER_IMAGE,
    Entrypoint: ['sh', '-c'],
    Cmd: [script.join(' && ')],
    User: '0:0',
    Labels: labels,
    NetworkDisabled: true,
    HostConfig: { NetworkMode: 'none', Mounts: mounts, LogConfig: { Type: 'json-file', Config: { 'max-size': '1m' } } },
  };
  const id = await docker.create(`k8s_volume-setup_${pod.name}_${pod.namespace}_${pod.uid}`, body);
  pod.dockerIds.push(id);
  try {
    await docker.start(id);
    const code = await docker.wait(id);
    if (code !== 0) throw new Error(`setting up the pod's volumes failed (the helper exited ${code})`);
  } finally {
    await docker.remove(id);
    pod.dockerIds.splice(pod.dockerIds.indexOf(id), 1);
  }
}
