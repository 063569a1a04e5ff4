import path from 'node:path';
import { z } from 'zod';
import { errorMessage } from '../core/asp-error.js';
import { BRANCH_NAME_PATTERN, BRANCH_NAME_RULE, parseJsonWith, TASK_ID_PATTERN } from '../config/task-spec.js';
import type { TraceDocument } from '../tracing/trace-model.js';
import type { ChangeReport } from '../workspace/change-bundle.js';
import { readHostFile, writeHostFile } from '../workspace/host-state.js';
import type { HostWorkspace } from '../workspace/host-workspace.js';
import type { DeliveryHold } from '../workspace/workspace-list.js';
import type { Decision, DeliveryOutcome, HitlStatus } from '../core/records.js';

export type { Decision, DeliveryOutcome, HitlStatus };

/** Everything needed to deliver a task's changes later (`asp approve`), saved in `.asp-host/delivery.json`. */
export interface DeliveryPlan {
  taskId: string;
  task: string;
  /** The repository as the task spec named it (resolved by the host, never the mirror): where the branch goes. */
  remote: string;
  /** The branch the task started from, which the pull request targets; the forge's default when unknown. */
  baseBranch: string | null;
  push: boolean;
  pr: boolean;
  draft: boolean;
  hitl: boolean;
  change: ChangeReport;
}

/** One repository's delivery: the task's own first, then the other repositories of a multi-repo task. */
export interface DeliveryEntry {
  /** null for the task's own repository, else the name of one of its other repositories (`repos/<name>`). */
  repo: string | null;
  plan: DeliveryPlan;
  outcome: DeliveryOutcome;
  /** The host's clean clone that holds the fetched changes: computed by the host from `repo`, never read from a file. */
  repoDir: string;
}

const DELIVERY_SCHEMA = 'asp.delivery/v1';
const text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((value) => !value.includes('\0'), 'must not hold NUL');
const hex = z.string().regex(/^[0-9a-f]{40,64}$/, 'must be a commit id');
const count = z.number().int().min(0);
const isoTime = z.string().refine((value) => !Number.isNaN(Date.parse(value)), 'must be an ISO time');

const changeSchema = z.strictObject({
  branch: z.string().regex(BRANCH_NAME_PATTERN, BRANCH_NAME_RULE),
  base: hex,
  head: hex,
  commits: count,
  filesChanged: count,
  insertions: count,
  deletions: count,
  stat: text(1_000_000),
  bundle: text(4096),
  patch: text(4096).nullable(),
  // The ref fetchChanges writes in the host clone; anything else would push whatever else the clone holds.
  ref: z.string().regex(/^refs\/asp\/[a-z0-9._-]+$/, 'must be a refs/asp/ ref'),
});

const planSchema = z.strictObject({
  taskId: z.string().regex(TASK_ID_PATTERN, 'must be a task id'),
  task: text(1_000_000),
  // A remote is given to git push as an argument: never one that reads as an option, never a line break.
  remote: text(4096)
    .min(1)
    .refine((remote) => !remote.startsWith('-') && !/[\r\n]/.test(remote), 'must be a repository URL or path'),
  baseBranch: z.string().regex(BRANCH_NAME_PATTERN, BRANCH_NAME_RULE).nullable(),
  push: z.boolean(),
  pr: z.boolean(),
  draft: z.boolean(),
  hitl: z.boolean(),
  change: changeSchema,
});

const outcomeSchema = z.strictObject({
  hitlStatus: z.enum(['not_required', 'approved', 'rejected', 'deferred', 'awaiting_approval']),
  decidedBy: text(256).optional(),
  decidedAt: isoTime.optional(),
  comment: text(10_000).optional(),
  pushedTo: text(4096).optional(),
  prUrl: text(4096).optional(),
  pr: z.strictObject({ owner: text(256), name: text(256), number: z.number().int().positive() }).optional(),
  error: text(100_000).optional(),
});

const savedSchema = z.strictObject({
  schema: z.literal(DELIVERY_SCHEMA),
  taskId: z.string().regex(TASK_ID_PATTERN),
  entries: z
    .array(z.strictObject({ repo: z.string().regex(TASK_ID_PATTERN, 'must be a repository name').nullable(), plan: planSchema, outcome: outcomeSchema }))
    .min(1)
    .max(100),
});

export type SavedDeliveries = z.infer<typeof savedSchema>;

/** A task's saved delivery, as read back: none, one that cannot be trusted (and why), or its entries. */
export type LoadedDeliveries = { kind: 'none' } | { kind: 'damaged'; reason: string } | { kind: 'saved'; entries: DeliveryEntry[] };

export async function saveDeliveries(workspace: HostWorkspace, entries: DeliveryEntry[]): Promise<void> {
  const saved: SavedDeliveries = {
    schema: DELIVERY_SCHEMA,
    taskId: workspace.taskId,
    entries: entries.map(({ repo, plan, outcome }) => ({ repo, plan, outcome })),
  };
  await writeHostFile(workspace, 'delivery', JSON.stringify(saved, null, 2) + '\n');
}

/**
 * Reads `.asp-host/delivery.json` (never anything in `.asp/`, which the sandbox wrote) and checks it. The clone
 * each entry delivers from is the host's own, computed from the workspace; a plan of another task is damaged.
 */
export async function loadDeliveries(workspace: HostWorkspace): Promise<LoadedDeliveries> {
  let content: string | undefined;
  try {
    content = await readHostFile(workspace, 'delivery');
  } catch (error) {
    return { kind: 'damaged', reason: `unreadable (${errorMessage(error)})` };
  }
  if (content === undefined) return { kind: 'none' };
  const parsed = parseDeliveries(content, workspace.taskId);
  if ('reason' in parsed) return { kind: 'damaged', reason: parsed.reason };
  return {
    kind: 'saved',
    entries: parsed.entries.map((entry) => ({ ...entry, repoDir: entry.repo === null ? workspace.repoDir : path.join(workspace.dir, 'repos', entry.repo) })),
  };
}

/** Checks a saved delivery document; a one-line reason when it is not one, or belongs to another task. */
export function parseDeliveries(content: string, taskId: string): SavedDeliveries | { reason: string } {
  const parsed = parseJsonWith(content, savedSchema);
  if ('notJson' in parsed) return { reason: 'not JSON' };
  if ('issues' in parsed) return { reason: `not an ${DELIVERY_SCHEMA} document: ${parsed.issues}` };
  const foreign = parsed.value.taskId !== taskId || parsed.value.entries.some((entry) => entry.plan.taskId !== taskId);
  if (foreign) return { reason: `it names another task than ${taskId}` };
  const repos = parsed.value.entries.map((entry) => entry.repo);
  if (new Set(repos).size !== repos.length || repos[0] !== null) return { reason: "its entries must be the task's own repository first, each repository once" };
  return parsed.value;
}

/** Whether anything of a saved delivery is still to be done: a decision, or a push that failed. */
export function pending(entries: Array<Pick<DeliveryEntry, 'outcome'>>): boolean {
  return entries.some(isOpen);
}

export function isOpen(entry: Pick<DeliveryEntry, 'outcome'>): boolean {
  return entry.outcome.hitlStatus === 'awaiting_approval' || entry.outcome.hitlStatus === 'deferred' || Boolean(entry.outcome.error);
}

/** What a person sees at the HITL gate before deciding. */
export interface GateSummary {
  taskId: string;
  change: ChangeReport;
  document: TraceDocument;
}

/**
 * A failed push leaves status "failed" but keeps the clone so `asp approve` can try again: asp's own delivery plan
 * says so (`.asp-host/`, never a file in `.asp/`, which the sandbox wrote). A damaged plan keeps the clone too (it
 * may be work someone still wants), and is reported.
 */
export const deliveryHold: DeliveryHold = async (workspace, record) => {
  const loaded = await loadDeliveries(workspace);
  if (loaded.kind === 'damaged') return { awaiting: true, problem: `delivery plan damaged (${loaded.reason})` };
  return { awaiting: record.status === 'awaiting_approval' || (loaded.kind === 'saved' && pending(loaded.entries)) };
};
