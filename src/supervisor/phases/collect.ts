import { Readable } from 'node:stream';
import type { Sandbox } from '../../backend/sandbox-backend.js';
import type { Settings } from '../../config/settings.js';
import type { Log } from '../../core/log.js';
import { extractChecked, type ExtractResult } from '../../workspace/workspace-tar.js';
import { fetchChanges, type ChangeReport } from '../../workspace/change-bundle.js';
import { fetchExtraChanges, type ExtraChange } from '../../workspace/extra-repos.js';
import { HOST_FILES, plantedHostNames } from '../../workspace/host-state.js';
import type { ClaimedTask } from './claim-workspace.js';
import type { ClonedRepos } from './clone-repos.js';
import type { StepsRun } from './run-steps.js';
import { untilStopped, type SessionEnd } from '../sandbox-session.js';

/**
 * `.asp/` as it comes out of the sandbox, streamed or copied: into the host's `.asp/` and nowhere else. asp's own
 * files are in `.asp-host/` (host-state.ts), out of its reach whatever the names: no name needs refusing.
 */
const ARTIFACT_EXTRACT = { root: '.asp' };
/** asp's files that the user also finds in `.asp/` (copies, written after the copy-out, never read back). */
const USER_COPIES = ['task', 'events', 'trace', 'result'] as const;

export interface Collected {
  /** What the sandbox changed, fetched from its bundle into the host's clone and checked; null when nothing. */
  change: ChangeReport | null;
  /** The same for each other repository of a multi-repo task. */
  extraChanges: ExtraChange[];
}

/**
 * What the sandbox leaves: its `.asp/` (streamed by the runner when small and the task ran to its end, else copied
 * out of the sandbox; every entry checked), then its commits, from the git bundle only. A second interrupt
 * (`forceSignal`) skips all of it: only quick removal is left.
 */
export async function collect(
  task: ClaimedTask,
  cloned: ClonedRepos,
  run: StepsRun,
  sandbox: Sandbox,
  deps: { settings: Settings; log: Log; forceSignal?: AbortSignal | undefined; removeSandbox?: (() => void) | undefined },
): Promise<Collected> {
  if (deps.forceSignal?.aborted) return { change: null, extraChanges: [] };
  const { trace, warn, workspace, taskId, branch } = task;
  const { end } = run;
  const streamed = end.kind === 'exited' ? task.events.artifacts.result() : { missing: `the task ended by ${end.kind}` };
  if ('missing' in streamed && end.kind === 'exited' && streamed.missing !== 'not streamed') warn(`artifacts stream unusable (${streamed.missing}): copying .asp/ out of the container`);
  // Streamed, `.asp/` is in hand already: nothing more is wanted of the sandbox, whose removal starts now, beside the
  // unpacking and the fetch of its changes. Else once it is copied out.
  if ('tar' in streamed) deps.removeSandbox?.();
  const extracted = await trace.phase('copy-out', () =>
    'tar' in streamed ? extractChecked(Readable.from([streamed.tar]), workspace.artifactsDir, ARTIFACT_EXTRACT) : copyOut(sandbox, end, workspace.artifactsDir, deps.forceSignal, warn),
  );
  deps.removeSandbox?.();
  if (!extracted) warn('copy-out cut short by a second interrupt: .asp/ holds what arrived before it');
  for (const rejected of extracted?.rejected ?? []) warn(`not copied out of the sandbox: .asp/${rejected.name.replace(/^\.asp\/?/, '')} (${rejected.reason})`);
  // Nothing trusts these names (asp reads its own state from .asp-host/ only), but a step writing them is probing:
  // said once each. .asp/task.json is asp's own input coming back, and is replaced by asp's copy.
  for (const planted of plantedHostNames(extracted?.files.map((file) => file.path).filter((file) => file !== HOST_FILES.task) ?? [])) {
    const replaced = USER_COPIES.some((file) => HOST_FILES[file] === planted);
    warn(
      `.asp/${planted} came out of the sandbox under the name of one of asp's own files: ${replaced ? "replaced by asp's copy" : 'kept as data'}, never read as asp's (asp's state is in .asp-host/)`,
    );
  }
  if (deps.forceSignal?.aborted) return { change: null, extraChanges: [] };

  const { hostEnv: env } = deps.settings;
  let change: ChangeReport | null = null;
  const fetched = await trace.phase('fetch-changes', () => fetchChanges(workspace.repoDir, workspace.artifactsDir, { base: cloned.commit, branch, env }));
  if (fetched.kind === 'fetched') {
    change = fetched.change;
    deps.log.info({ taskId, branch, commits: change.commits }, `changes: ${change.commits} commit(s) on ${branch}, ${change.filesChanged} file(s) changed, +${change.insertions} -${change.deletions}`);
  } else if (fetched.kind === 'rejected') warn(`changes not accepted: ${fetched.reason}`);
  else deps.log.info({ taskId }, 'no changes to the repository');
  let extraChanges: ExtraChange[] = [];
  if (cloned.extras.length) {
    extraChanges = await trace.phase('fetch-changes:repos', () => fetchExtraChanges(cloned.extras, workspace.artifactsDir, branch, env));
    for (const extra of extraChanges) {
      if (extra.rejected) warn(`changes to ${extra.name} not accepted: ${extra.rejected}`);
      else if (extra.change) deps.log.info({ taskId, repo: extra.name }, `changes to ${extra.name}: ${extra.change.commits} commit(s), ${extra.change.filesChanged} file(s) changed`);
    }
  }
  return { change, extraChanges };
}

/** Copies `.asp/` out; a second interrupt (`forceSignal`) cuts it short and resolves undefined, so removal comes at once. */
async function copyOut(sandbox: Sandbox, end: SessionEnd, destination: string, forceSignal: AbortSignal | undefined, warn: (message: string) => void): Promise<ExtractResult | undefined> {
  // Ended at the runner's last word: its container is a moment from stopping. Any other end stopped it already.
  if (end.kind === 'exited' && end.early) await untilStopped(sandbox);
  const archive = await sandbox.fetchArtifacts();
  if (!archive) {
    warn('the sandbox has no .asp/ to copy out');
    return { files: [], rejected: [] };
  }
  const cut = () => archive.destroy();
  forceSignal?.addEventListener('abort', cut, { once: true });
  // A second interrupt that came while the archive was being asked for has fired already: the listener never would.
  if (forceSignal?.aborted) cut();
  try {
    return await extractChecked(archive, destination, ARTIFACT_EXTRACT);
  } catch (error) {
    if (forceSignal?.aborted) return undefined;
    throw error;
  } finally {
    forceSignal?.removeEventListener('abort', cut);
  }
}
