import { AspError, errorMessage } from '../core/asp-error.js';
import { labelFilter, parseOwnership, type Ownership } from '../docker/labels.js';
import type { DockerPort } from '../docker/port.js';
import { mapBounded } from './bounded-pool.js';
import { judge, type ReapPolicy, type ReapReason } from './reap-policy.js';
import { countSkipped, type ReapItem, type ReapReport } from './reap-report.js';

export interface DockerTarget {
  kind: 'container' | 'volume';
  /** Container id or volume name: what the daemon removes by. */
  ref: string;
  name: string;
  owner: Ownership;
  reason: ReapReason;
}

/** One filtered list call per kind (asp.managed=true), run together: the sweep at every start must stay cheap. */
export async function findDeadDockerObjects(docker: DockerPort, policy: ReapPolicy, skipped: ReapReport['skipped']): Promise<DockerTarget[]> {
  const [containers, volumes] = await Promise.all([docker.listContainers(labelFilter()), docker.listVolumes(labelFilter())]);
  const targets: DockerTarget[] = [];
  const consider = (kind: DockerTarget['kind'], ref: string, name: string, labels: Record<string, string>, createdAt: Date | undefined) => {
    const owner = parseOwnership(labels);
    const verdict = judge(owner, createdAt, policy);
    if (verdict.reap && owner) targets.push({ kind, ref, name, owner, reason: verdict.reason });
    else if (!verdict.reap) countSkipped(skipped, verdict.reason);
  };
  for (const container of containers) consider('container', container.id, container.name, container.labels, container.createdAt);
  for (const volume of volumes) consider('volume', volume.name, volume.name, volume.labels, volume.createdAt);
  return targets;
}

/** How often a volume still mounted (409) is retried: its container's removal may be finishing elsewhere. */
const IN_USE_RETRIES = 3;
const IN_USE_BACKOFF_MS = 250;

/**
 * Removes the targets, one run at a time per pool slot: a run's containers first (with their anonymous volumes),
 * then its named volume, which a container still mounting it would keep. Objects already gone count as removed.
 */
export async function removeDockerObjects(docker: DockerPort, targets: DockerTarget[], concurrency: number): Promise<ReapItem[]> {
  const runs = new Map<string, DockerTarget[]>();
  for (const target of targets) {
    const key = `${target.owner.taskId}\n${target.owner.runId}`;
    runs.set(key, [...(runs.get(key) ?? []), target]);
  }
  const perRun = await mapBounded([...runs.values()], concurrency, async (group) => {
    const items: ReapItem[] = [];
    const containers = group.filter((target) => target.kind === 'container');
    items.push(...(await Promise.all(containers.map((target) => removeOne(target, () => docker.removeContainer(target.ref))))));
    for (const target of group.filter((candidate) => candidate.kind === 'volume')) {
      items.push(await removeOne(target, () => removeVolumeWhenFree(docker, target.ref)));
    }
    return items;
  });
  return perRun.flat();
}

export function plannedItem(target: DockerTarget): ReapItem {
  return item(target, 'would-remove');
}

async function removeOne(target: DockerTarget, remove: () => Promise<void>): Promise<ReapItem> {
  try {
    await remove();
    return item(target, 'removed');
  } catch (error) {
    const inUse = error instanceof AspError && error.code === 'DOCKER_CONFLICT';
    return { ...item(target, inUse ? 'in-use' : 'failed'), error: errorMessage(error) };
  }
}

async function removeVolumeWhenFree(docker: DockerPort, name: string): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await docker.removeVolume(name);
    } catch (error) {
      const inUse = error instanceof AspError && error.code === 'DOCKER_CONFLICT';
      if (!inUse || attempt >= IN_USE_RETRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, IN_USE_BACKOFF_MS * (attempt + 1)));
    }
  }
}

function item(target: DockerTarget, outcome: ReapItem['outcome']): ReapItem {
  return { kind: target.kind, name: target.name, taskId: target.owner.taskId, runId: target.owner.runId, reason: target.reason, outcome };
}
