import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { saveDeliveries, type DeliveryEntry, type DeliveryOutcome } from '../../src/delivery/delivery-plan.js';
import { workspacePaths } from '../../src/workspace/host-workspace.js';

const SHA = 'a'.repeat(40);

/** One delivery entry of the task's own repository, as asp run saves it when a push fails or the gate waits. */
export function deliveryEntry(taskId: string, outcome: DeliveryOutcome, repoDir = '/nowhere'): DeliveryEntry {
  return {
    repo: null,
    repoDir,
    outcome,
    plan: {
      taskId,
      task: 'a task',
      remote: 'git://127.0.0.1:9/org/app.git',
      baseBranch: 'main',
      push: true,
      pr: false,
      draft: false,
      hitl: false,
      change: {
        branch: `asp/${taskId}`,
        base: SHA,
        head: 'b'.repeat(40),
        commits: 1,
        filesChanged: 1,
        insertions: 1,
        deletions: 0,
        stat: ' README.md | 1 +',
        bundle: 'change.bundle',
        patch: 'diff.patch',
        ref: 'refs/asp/incoming',
      },
    },
  };
}

/** Saves asp's own delivery plan (`.asp-host/delivery.json`) for the task dir `<root>/<taskId>`. */
export async function savePlan(root: string, taskId: string, outcome: DeliveryOutcome): Promise<string> {
  const workspace = workspacePaths(root, taskId);
  mkdirSync(workspace.stateDir, { recursive: true });
  await saveDeliveries(workspace, [deliveryEntry(taskId, outcome, workspace.repoDir)]);
  return path.join(workspace.stateDir, 'delivery.json');
}
