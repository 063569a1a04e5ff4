import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChangeReport } from '../workspace/change-bundle.js';

export type HitlStatus = 'not_required' | 'approved' | 'rejected' | 'deferred' | 'awaiting_approval';
export type Decision = 'approve' | 'deny' | 'defer';

/** Everything needed to deliver a task's changes later (`asp approve`), saved as `.asp/delivery.json`. */
export interface DeliveryPlan {
  taskId: string;
  task: string;
  /** The repository as the user named it (never the mirror): where the branch goes. */
  remote: string;
  /** The branch the task started from, which the pull request targets; the forge's default when unknown. */
  baseBranch: string | null;
  push: boolean;
  pr: boolean;
  draft: boolean;
  hitl: boolean;
  change: ChangeReport;
}

/** What became of the changes: the gate's decision, and where they went. */
export interface DeliveryOutcome {
  hitlStatus: HitlStatus;
  decidedBy?: string;
  decidedAt?: string;
  comment?: string;
  pushedTo?: string;
  prUrl?: string;
  /** Where the pull request is, so the PRs of a multi-repo task can link each other. */
  pr?: { owner: string; name: string; number: number };
  /** Set when a push or PR failed: the work is kept and `asp approve` can try again. */
  error?: string;
}

export const DELIVERY_FILE = 'delivery.json';

/** One repository's delivery: the task's own first, then the other repositories of a multi-repo task. */
export interface DeliveryEntry {
  plan: DeliveryPlan;
  outcome: DeliveryOutcome;
  /** The host's clean clone that holds the fetched changes. */
  repoDir: string;
}

export async function saveDeliveries(artifactsDir: string, entries: DeliveryEntry[]): Promise<void> {
  await writeFile(path.join(artifactsDir, DELIVERY_FILE), JSON.stringify({ entries }, null, 2) + '\n');
}

export async function loadDeliveries(artifactsDir: string): Promise<DeliveryEntry[] | undefined> {
  try {
    const saved = JSON.parse(await readFile(path.join(artifactsDir, DELIVERY_FILE), 'utf8')) as { entries?: DeliveryEntry[] };
    return saved.entries?.length ? saved.entries : undefined;
  } catch {
    return undefined;
  }
}

/** Whether anything of a saved delivery is still to be done: a decision, or a push that failed. */
export function pending(entries: DeliveryEntry[]): boolean {
  return entries.some((entry) => entry.outcome.hitlStatus === 'awaiting_approval' || entry.outcome.hitlStatus === 'deferred' || Boolean(entry.outcome.error));
}

/** What a person sees at the HITL gate before deciding. */
export interface GateSummary {
  taskId: string;
  change: ChangeReport;
  document: import('../tracing/trace-model.js').TraceDocument;
}
