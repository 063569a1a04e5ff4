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
  /** Set when a push or PR failed: the work is kept and `asp approve` can try again. */
  error?: string;
}

export const DELIVERY_FILE = 'delivery.json';

export async function saveDeliveryPlan(artifactsDir: string, plan: DeliveryPlan, outcome: DeliveryOutcome): Promise<void> {
  await writeFile(path.join(artifactsDir, DELIVERY_FILE), JSON.stringify({ plan, outcome }, null, 2) + '\n');
}

export async function loadDeliveryPlan(artifactsDir: string): Promise<{ plan: DeliveryPlan; outcome: DeliveryOutcome } | undefined> {
  try {
    return JSON.parse(await readFile(path.join(artifactsDir, DELIVERY_FILE), 'utf8')) as { plan: DeliveryPlan; outcome: DeliveryOutcome };
  } catch {
    return undefined;
  }
}

/** What a person sees at the HITL gate before deciding. */
export interface GateSummary {
  taskId: string;
  change: ChangeReport;
  document: import('../tracing/trace-model.js').TraceDocument;
}
