import { z } from 'zod';
import { errorMessage } from '../core/asp-error.js';
import { parseJsonWith, TASK_ID_PATTERN } from '../config/task-spec.js';
import { copyForUser, hostFilePath, readHostFile, writeHostFile } from './host-state.js';
import type { HostWorkspace } from './host-workspace.js';

/**
 * A task's result as read back from `.asp-host/result.json` (asp approve rewrites it): the fields asp reads or
 * rewrites are checked, the rest is carried over as it is.
 */
export const resultFileSchema = z.looseObject({
  taskId: z.string().regex(TASK_ID_PATTERN),
  runId: z.string().min(1).max(200),
  status: z.enum(['passed', 'failed', 'timeout', 'interrupted', 'error', 'awaiting_approval', 'rejected']),
  exitCode: z.number().int().min(0).max(255),
  workspacePath: z.string().min(1),
  kept: z.boolean(),
  delivery: z.looseObject({ hitlStatus: z.string() }).nullable(),
  steps: z.array(z.looseObject({ name: z.string(), status: z.string() })),
  warnings: z.array(z.string()),
});

export type ResultFile = z.infer<typeof resultFileSchema>;

/** Parses a result document of task `taskId`; a one-line reason when it is not one. */
export function parseResultFile(content: string, taskId: string): ResultFile | { problem: string } {
  const parsed = parseJsonWith(content, resultFileSchema);
  if ('notJson' in parsed) return { problem: 'not JSON' };
  if ('issues' in parsed) return { problem: parsed.issues };
  if (parsed.value.taskId !== taskId) return { problem: `it is the result of ${parsed.value.taskId}` };
  return parsed.value;
}

/** Writes the result (master and the user's copy in `.asp/`). */
export async function writeResultFile(workspace: HostWorkspace, result: object): Promise<void> {
  await writeHostFile(workspace, 'result', JSON.stringify(result, null, 2) + '\n');
  await copyForUser(workspace, 'result');
}

/**
 * Rewrites the saved result whole, as `rewrite` makes it from the saved one (asp approve: the same rule the run's
 * own delivery used). A result that is missing or damaged is reported and left as it is: the trace holds the
 * decision too.
 */
export async function rewriteResultFile(workspace: HostWorkspace, rewrite: (saved: ResultFile) => object, warn: (message: string) => void): Promise<void> {
  const file = hostFilePath(workspace, 'result');
  try {
    const content = await readHostFile(workspace, 'result');
    if (content === undefined) return warn(`${file} is missing: the result was not updated`);
    const parsed = parseResultFile(content, workspace.taskId);
    if ('problem' in parsed) return warn(`${file} is damaged (${parsed.problem}): the result was not updated`);
    await writeResultFile(workspace, rewrite(parsed));
  } catch (error) {
    warn(`${file} was not updated: ${errorMessage(error)}`);
  }
}
