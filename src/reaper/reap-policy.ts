import type { Ownership, SupervisorIdentity } from '../backend/ownership-labels.js';
import { ownershipOf, type OwnerRecord } from '../workspace/host-workspace.js';

/** Whether a supervisor lives: on this host we can look (pid + start time); elsewhere only expiry can tell. */
export type Liveness = (identity: SupervisorIdentity) => 'alive' | 'dead' | 'other-host';

export interface ReapPolicy {
  now: Date;
  liveness: Liveness;
  /** `--all`: also objects kept with `--keep` (still only dead ones). */
  all: boolean;
  /** `--older-than`: only objects created at least this long ago; undefined means any age. */
  olderThanMs: number | undefined;
}

export type ReapReason = 'supervisor-gone' | 'expired';
export type SkipReason = 'not-asp' | 'supervisor-alive' | 'kept' | 'awaiting-decision' | 'too-recent' | 'not-expired';

export type Verdict = { reap: true; reason: ReapReason } | { reap: false; reason: SkipReason };

/**
 * The one rule for containers, volumes and host dirs alike. An object is taken only when asp owns it (valid
 * labels) and it is dead: its supervisor is gone from this host, or, when the supervisor lives on another host
 * and cannot be checked, it is past `expires-at`. A supervisor that is alive is never overruled, not even by
 * expiry: it still owns its cleanup, and the container's own deadline has already stopped the work.
 */
export function judge(owner: Ownership | undefined, createdAt: Date | undefined, policy: ReapPolicy): Verdict {
  if (!owner) return { reap: false, reason: 'not-asp' };
  const state = policy.liveness(owner.supervisor);
  if (state === 'alive') return { reap: false, reason: 'supervisor-alive' };
  if (owner.keep && !policy.all) return { reap: false, reason: 'kept' };
  if (policy.olderThanMs !== undefined) {
    // Age unknown counts as too recent: --older-than is a promise not to touch anything newer.
    if (!createdAt || policy.now.getTime() - createdAt.getTime() < policy.olderThanMs) return { reap: false, reason: 'too-recent' };
  }
  if (state === 'dead') return { reap: true, reason: 'supervisor-gone' };
  return policy.now.getTime() >= owner.expiresAt.getTime() ? { reap: true, reason: 'expired' } : { reap: false, reason: 'not-expired' };
}

/** What reaping does to a host dir: its clone goes, `.asp/` stays for retention, the owner file says why. */
export type WorkspaceAction = { act: true; reason: ReapReason; abandon: boolean; removeClone: boolean; release: boolean } | { act: false; reason: SkipReason | 'nothing-left' };

export function judgeWorkspace(record: OwnerRecord, state: { hasClone: boolean; awaitingDecision: boolean }, policy: ReapPolicy): WorkspaceAction {
  const verdict = judge(ownershipOf(record), new Date(record.createdAt), policy);
  if (!verdict.reap) return { act: false, reason: verdict.reason };
  // A dir still marked running whose supervisor is dead was abandoned mid-task: say so, since no one else will.
  const abandon = record.status === 'running';
  // A clone waiting for `asp approve` is kept on purpose, as with --keep: only --all takes it.
  if (!abandon && state.awaitingDecision && state.hasClone && !policy.all) return { act: false, reason: 'awaiting-decision' };
  // A kept dir taken by --all is released: from then on retention may prune it like any other.
  const release = record.keep;
  if (!abandon && !state.hasClone && !release) return { act: false, reason: 'nothing-left' };
  return { act: true, reason: verdict.reason, abandon, removeClone: state.hasClone, release };
}

export interface RetentionPolicy {
  now: Date;
  liveness: Liveness;
  /** Finished this long ago or more. */
  olderThanMs: number;
  /** Also kept tasks (only ever by an explicit `asp workspaces prune --all`). */
  all: boolean;
}

export type PruneVerdict = { prune: true; ageMs: number } | { prune: false; reason: 'running' | 'kept' | 'awaiting-decision' | 'too-recent' };

/**
 * Retention: a finished task's dir (or an abandoned one) goes once it is older than the retention period,
 * counted from when it finished. A task that may still be running (live or unverifiable supervisor) never goes;
 * kept ones and ones awaiting a decision (`asp approve`) only with --all.
 */
export function judgePrune(record: OwnerRecord, awaitingDecision: boolean, policy: RetentionPolicy): PruneVerdict {
  if (record.status === 'running') {
    const verdict = judge(ownershipOf(record), undefined, { now: policy.now, liveness: policy.liveness, all: true, olderThanMs: undefined });
    if (!verdict.reap) return { prune: false, reason: 'running' };
  }
  if (record.keep && !policy.all) return { prune: false, reason: 'kept' };
  // Pruning it would silently drop work someone still has to approve or deny.
  if (awaitingDecision && !policy.all) return { prune: false, reason: 'awaiting-decision' };
  const endedAt = new Date(record.finishedAt ?? record.reapedAt ?? record.createdAt);
  const ageMs = policy.now.getTime() - endedAt.getTime();
  return ageMs >= policy.olderThanMs ? { prune: true, ageMs } : { prune: false, reason: 'too-recent' };
}
