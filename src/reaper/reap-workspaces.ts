import path from 'node:path';
import { errorMessage } from '../core/asp-error.js';
import { removePath, updateOwnerFile } from '../workspace/host-workspace.js';
import { listWorkspaces, type WorkspaceEntry } from '../workspace/workspace-list.js';
import { deliveryHold } from '../delivery/delivery-plan.js';
import { mapBounded } from '../core/bounded-pool.js';
import { judgeWorkspace, type ReapPolicy, type WorkspaceAction } from './reap-policy.js';
import { countSkipped, type ReapItem, type ReapReport } from './reap-report.js';

export interface WorkspaceTarget {
  entry: WorkspaceEntry;
  action: Extract<WorkspaceAction, { act: true }>;
}

export async function findDeadWorkspaces(root: string | WorkspaceEntry[], policy: ReapPolicy, skipped: ReapReport['skipped']): Promise<WorkspaceTarget[]> {
  const targets: WorkspaceTarget[] = [];
  for (const entry of typeof root === 'string' ? await listWorkspaces(root, deliveryHold) : root) {
    const action = judgeWorkspace(entry.record, entry, policy);
    if (action.act) targets.push({ entry, action });
    else countSkipped(skipped, action.reason);
  }
  return targets;
}

/**
 * A dead run's dir loses its clone (the bulk of it, and untrusted content) and keeps `.asp/`, whose artifacts
 * are what retention is for. The owner file is rewritten last, so a reap cut short is simply done again.
 */
export async function cleanWorkspaces(targets: WorkspaceTarget[], now: Date, concurrency: number): Promise<ReapItem[]> {
  return mapBounded(targets, concurrency, async ({ entry, action }) => {
    try {
      if (action.removeClone) {
        await removePath(path.join(entry.dir, 'repo'));
        await removePath(path.join(entry.dir, 'repos'));
      }
      await updateOwnerFile(entry.dir, entry.record, {
        ...(action.abandon ? { status: 'abandoned' as const } : {}),
        ...(action.release ? { keep: false } : {}),
        reapedAt: now.toISOString(),
      });
      return item({ entry, action }, 'removed');
    } catch (error) {
      return { ...item({ entry, action }, 'failed'), error: errorMessage(error) };
    }
  });
}

export function plannedWorkspaceItem(target: WorkspaceTarget): ReapItem {
  return item(target, 'would-remove');
}

function item({ entry, action }: WorkspaceTarget, outcome: ReapItem['outcome']): ReapItem {
  const done = [action.removeClone ? 'clone removed' : '', action.abandon ? 'marked abandoned' : '', action.release ? 'released from --keep' : ''].filter(Boolean).join(', ');
  return { kind: 'workspace', name: entry.dir, taskId: entry.record.taskId, runId: entry.record.runId, reason: action.reason, outcome, detail: done };
}
