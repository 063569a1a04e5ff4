import { AspError, errorMessage } from '../core/asp-error.js';
import { labelFilter, parseOwnership, type Ownership } from '../backend/ownership-labels.js';
import type { OwnedObject, SandboxBackend } from '../backend/sandbox-backend.js';
import { mapBounded } from '../core/bounded-pool.js';
import { judge, type ReapPolicy, type ReapReason } from './reap-policy.js';
import { countSkipped, type ReapItem, type ReapReport } from './reap-report.js';

export interface SandboxTarget {
  /** The report's words for what a backend made: a sandbox is a container, its workspace a volume. */
  kind: 'container' | 'pod' | 'volume';
  object: OwnedObject;
  name: string;
  owner: Ownership;
  reason: ReapReason;
}

/** One filtered list call (asp.managed=true): the sweep at every start must stay cheap. */
export async function findDeadSandboxes(backend: SandboxBackend, policy: ReapPolicy, skipped: ReapReport['skipped']): Promise<SandboxTarget[]> {
  const targets: SandboxTarget[] = [];
  for (const object of await backend.listOwned(labelFilter())) {
    const owner = parseOwnership(object.labels);
    const verdict = judge(owner, object.createdAt, policy);
    if (verdict.reap && owner) targets.push({ kind: object.kind === 'sandbox' ? backend.sandboxKind : 'volume', object, name: object.name, owner, reason: verdict.reason });
    else if (!verdict.reap) countSkipped(skipped, verdict.reason);
  }
  return targets;
}

/**
 * Removes the targets, one run at a time per pool slot: a run's sandboxes first, then its workspaces, which a
 * sandbox still using them would keep. Objects already gone count as removed.
 */
export async function removeSandboxes(backend: SandboxBackend, targets: SandboxTarget[], concurrency: number): Promise<ReapItem[]> {
  const runs = new Map<string, SandboxTarget[]>();
  for (const target of targets) {
    const key = `${target.owner.taskId}\n${target.owner.runId}`;
    runs.set(key, [...(runs.get(key) ?? []), target]);
  }
  const perRun = await mapBounded([...runs.values()], concurrency, async (group) => {
    const items: ReapItem[] = [];
    const sandboxes = group.filter((target) => target.object.kind === 'sandbox');
    items.push(...(await Promise.all(sandboxes.map((target) => removeOne(target, () => backend.removeOwned(target.object))))));
    for (const target of group.filter((candidate) => candidate.object.kind === 'workspace')) {
      items.push(await removeOne(target, () => backend.removeOwned(target.object)));
    }
    return items;
  });
  return perRun.flat();
}

export function plannedItem(target: SandboxTarget): ReapItem {
  return item(target, 'would-remove');
}

async function removeOne(target: SandboxTarget, remove: () => Promise<void>): Promise<ReapItem> {
  try {
    await remove();
    return item(target, 'removed');
  } catch (error) {
    const inUse = error instanceof AspError && error.code === 'DOCKER_CONFLICT';
    return { ...item(target, inUse ? 'in-use' : 'failed'), error: errorMessage(error) };
  }
}

function item(target: SandboxTarget, outcome: ReapItem['outcome']): ReapItem {
  return { kind: target.kind, name: target.name, taskId: target.owner.taskId, runId: target.owner.runId, reason: target.reason, outcome };
}
