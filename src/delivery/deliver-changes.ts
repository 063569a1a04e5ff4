import os from 'node:os';
import { AspError, errorMessage } from '../core/asp-error.js';
import { redact, type Forge } from '../forge/forge.js';
import type { Log } from '../core/log.js';
import { pushBranch } from '../workspace/push-branch.js';
import type { Decision, DeliveryOutcome, DeliveryPlan } from './delivery-plan.js';

export interface DeliveryContext {
  repoDir: string;
  env: Readonly<Record<string, string | undefined>>;
  /** The code host, when a token is configured; required for --pr. */
  forge: Forge | undefined;
  /** The token and the web host it belongs to, for HTTPS pushes. */
  token: { value: string; host: string } | undefined;
  log: Log;
  /** The markdown report that becomes the pull request's body. */
  report: () => Promise<string>;
}

/**
 * The human-in-the-loop gate followed by push and pull request, all host-side with host credentials.
 * `decision` is the gate's answer (a flag, a prompt, or `asp approve` later); undefined means nobody decided yet.
 * Push and PR failures do not throw: they come back in `error`, and the caller keeps the work for a retry.
 */
export async function deliverChanges(plan: DeliveryPlan, decision: Decision | undefined, context: DeliveryContext, comment?: string): Promise<DeliveryOutcome> {
  const decided = decision ? { decidedBy: os.userInfo().username, decidedAt: new Date().toISOString(), ...(comment ? { comment } : {}) } : {};
  if (plan.hitl) {
    if (!decision) return { hitlStatus: 'awaiting_approval' };
    if (decision === 'defer') return { hitlStatus: 'deferred', ...decided };
    if (decision === 'deny') return { hitlStatus: 'rejected', ...decided };
  }
  const hitlStatus = plan.hitl ? 'approved' : 'not_required';
  if (!plan.push && !plan.pr) return { hitlStatus, ...decided };
  try {
    let pushUrl = plan.remote;
    let headOwner: string | undefined;
    const target = plan.pr ? await requireForge(context).repository(plan.remote) : undefined;
    if (target) {
      headOwner = target.owner;
      if (!target.canPush) {
        // The token cannot write to the repository: push to the user's fork and open the PR from there.
        const fork = await requireForge(context).fork(target);
        context.log.info({ fork: `${fork.owner}/${fork.name}` }, `no push access to ${target.owner}/${target.name}: using the fork ${fork.owner}/${fork.name}`);
        pushUrl = fork.pushUrl;
        headOwner = fork.owner;
      } else pushUrl = target.pushUrl;
    }
    await pushBranch(context.repoDir, { remote: pushUrl, ref: plan.change.ref, branch: plan.change.branch, env: context.env, token: context.token, taskId: plan.taskId });
    context.log.info({ branch: plan.change.branch, remote: redact(pushUrl) }, `pushed ${plan.change.commits} commit(s) to branch ${plan.change.branch} of ${redact(pushUrl)}`);
    if (!target || !headOwner) return { hitlStatus, ...decided, pushedTo: pushUrl };
    const pr = await requireForge(context).openPullRequest({
      target,
      head: { owner: headOwner, branch: plan.change.branch },
      base: plan.baseBranch ?? target.defaultBranch,
      title: pullRequestTitle(plan),
      body: await context.report(),
      draft: plan.draft,
    });
    context.log.info({ url: pr.url }, `opened pull request ${pr.url}`);
    return { hitlStatus, ...decided, pushedTo: pushUrl, prUrl: pr.url, pr: { owner: target.owner, name: target.name, number: pr.number } };
  } catch (error) {
    return { hitlStatus, ...decided, error: errorMessage(error) + (error instanceof AspError && error.hint ? ` — ${error.hint}` : '') };
  }
}

function requireForge(context: DeliveryContext): Forge {
  if (!context.forge) throw new AspError('BAD_INPUT', '--pr needs a GitHub token', 'set GITHUB_TOKEN (or GH_TOKEN) on the host');
  return context.forge;
}

/** The task's first line, as a PR title of a sensible length. */
export function pullRequestTitle(plan: Pick<DeliveryPlan, 'task' | 'taskId'>): string {
  const first = plan.task.split('\n')[0]?.trim() ?? '';
  const title = first || `asp: ${plan.taskId}`;
  return title.length > 72 ? `${title.slice(0, 71)}…` : title;
}

/**
 * Delivers every repository of a task with the same decision, the task's own first; when more than one pull
 * request was opened, each body gets the links to the others (a multi-repo change is reviewed as one).
 */
export async function deliverAll<Entry extends { plan: DeliveryPlan; repoDir: string }>(
  entries: Entry[],
  decision: Decision | undefined,
  contextFor: (repoDir: string) => DeliveryContext,
  comment?: string,
): Promise<Array<Entry & { outcome: DeliveryOutcome }>> {
  const delivered: Array<Entry & { outcome: DeliveryOutcome }> = [];
  for (const entry of entries) delivered.push({ ...entry, outcome: await deliverChanges(entry.plan, decision, contextFor(entry.repoDir), comment) });
  const opened = delivered.filter((entry) => entry.outcome.pr && entry.outcome.prUrl);
  if (opened.length > 1) {
    for (const entry of opened) {
      const context = contextFor(entry.repoDir);
      const others = opened.filter((other) => other !== entry).map((other) => `- ${other.outcome.pr?.owner}/${other.outcome.pr?.name}: ${other.outcome.prUrl}`);
      const pr = entry.outcome.pr;
      if (!pr) continue;
      try {
        await requireForge(context).updatePullRequestBody(pr, pr.number, `${await context.report()}\n\n## Related pull requests (same task)\n\n${others.join('\n')}\n`);
      } catch (error) {
        context.log.warn({ pr: entry.outcome.prUrl }, `could not link ${entry.outcome.prUrl} to the other pull requests: ${errorMessage(error)}`);
      }
    }
  }
  return delivered;
}
