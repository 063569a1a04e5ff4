import { AspError, errorMessage } from '../core/asp-error.js';
import { LABEL, labelFilter, parseOwnership, type Ownership } from '../backend/ownership-labels.js';
import type { OwnedObject, SandboxBackend } from '../backend/sandbox-backend.js';
import { mapBounded } from '../core/bounded-pool.js';
import { judge, type ReapPolicy, type ReapReason, type Verdict } from './reap-policy.js';
import { countSkipped, type ReapItem, type ReapReport } from './reap-report.js';

export interface SandboxTarget {
  /** The report's words for what a backend made: a sandbox is a container, its workspace a volume. */
  kind: 'container' | 'pod' | 'volume';
  object: OwnedObject;
  name: string;
  owner: Ownership;
  reason: ReapReason;
}

/**
 * One filtered list call (asp.managed=true): the sweep at every start must stay cheap. A warm sandbox a task claimed
 * (and its workspace) is judged by the claim's marker, the task's ownership, not by its labels, which name the pool's
 * keeper: a live task's sandbox stays whatever became of the pool, a dead task's goes though its keeper lives.
 */
export async function findDeadSandboxes(backend: SandboxBackend, policy: ReapPolicy, skipped: ReapReport['skipped']): Promise<SandboxTarget[]> {
  const targets: SandboxTarget[] = [];
  const objects = await backend.listOwned(labelFilter());
  const holders = claimHolders(objects);
  const taken = new Set(
    objects.flatMap((object) => (object.kind === 'sandbox' && object.labels[LABEL.poolSandbox] && object.name.startsWith('asp-claimed-') ? [object.labels[LABEL.poolSandbox]] : [])),
  );
  const withSandbox = new Set(objects.flatMap((object) => (object.kind === 'sandbox' && object.labels[LABEL.poolSandbox] ? [object.labels[LABEL.poolSandbox]] : [])));
  for (const object of objects) {
    const owner = parseOwnership(object.labels);
    const seq = object.labels[LABEL.poolSandbox];
    // Claimed: its container says so by its name; a workspace whose container is gone, by the markers left.
    const held = seq ? holders.get(seq) : undefined;
    const claimed = seq !== undefined && (taken.has(seq) || (held !== undefined && !withSandbox.has(seq)));
    // Claimed with no marker listed: the marker came after this listing began (the lists are read side by side), or
    // something removed it. Its task cannot be asked, so only its expiry decides, never its keeper's death.
    const verdict = !claimed ? judge(owner, object.createdAt, policy) : held ? judgeHeld(held, object.createdAt, policy) : byExpiry(owner, policy);
    // Reported as the claiming task's (and removed with its marker), not as its pool's.
    const reported = claimed && held ? (held[0] ?? owner) : owner;
    if (verdict.reap && reported) targets.push({ kind: object.kind === 'sandbox' ? backend.sandboxKind : 'volume', object, name: object.name, owner: reported, reason: verdict.reason });
    else if (!verdict.reap) countSkipped(skipped, verdict.reason);
  }
  return targets;
}

/** The owners of the claim markers, by the warm sandbox each names. */
function claimHolders(objects: OwnedObject[]): Map<string, Ownership[]> {
  const holders = new Map<string, Ownership[]>();
  for (const object of objects) {
    const seq = object.labels[LABEL.claims];
    const owner = parseOwnership(object.labels);
    if (seq && owner) holders.set(seq, [...(holders.get(seq) ?? []), owner]);
  }
  return holders;
}

function byExpiry(owner: Ownership | undefined, policy: ReapPolicy): Verdict {
  if (!owner) return { reap: false, reason: 'not-asp' };
  return policy.now.getTime() >= owner.expiresAt.getTime() ? { reap: true, reason: 'expired' } : { reap: false, reason: 'not-expired' };
}

/** A claimed sandbox goes only when every task that claimed it may go: one that may not (alive, kept) holds it. */
function judgeHeld(held: Ownership[], createdAt: Date | undefined, policy: ReapPolicy): Verdict {
  const verdicts = held.map((owner) => judge(owner, createdAt, policy));
  return verdicts.find((verdict) => !verdict.reap) ?? verdicts[0] ?? { reap: false, reason: 'not-asp' };
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
