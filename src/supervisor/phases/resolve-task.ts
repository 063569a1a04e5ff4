import { runtimeLimits } from '../../backend/sandbox-policy.js';
import { AspError } from '../../core/asp-error.js';
import { readPipelineEarly } from '../../config/pipeline.js';
import type { Settings } from '../../config/settings.js';
import { deadlineAfter, type Clock, type Deadline } from '../../core/clock.js';
import { generateRunId } from '../../config/task-id.js';
import type { TaskSpec } from '../../config/task-spec.js';
import { chooseModel, MODEL_KEY_VARIABLES, modelSecrets, type ModelChoice } from '../../models/model-choice.js';
import { SECRET_NAME } from '../../protocol/secret-masker.js';
import { resolveExtraRepos } from '../../workspace/extra-repos.js';
import { resolveRepoSource, type RepoSource } from '../../workspace/repository.js';
import { checkDirOf } from './check.js';

/** What a task will be, worked out before anything is made: a bad input ends the task here, with nothing to undo. */
export interface TaskPlan {
  /** The spec with a `--pipeline` file read in. */
  spec: TaskSpec;
  runId: string;
  /** The wall time the task started at, read once (the task's clock is anchored there): its expiry counts from it. */
  startedAt: Date;
  /** When the task must be over: its --timeout after the start, on the monotonic clock. */
  deadline: Deadline;
  source: RepoSource;
  extraSources: ReturnType<typeof resolveExtraRepos>;
  /** The host's model provider when one is configured: its keys never enter the sandbox. */
  modelChoice: ModelChoice | undefined;
  /** `--check-dir`, resolved and checked to be a directory. */
  checkDir: string | undefined;
  /** The sandbox's whole share of the host environment: the variables `--env` named, model keys taken out. */
  sandboxEnv: Record<string, string>;
  /** Values masked wherever sandbox text is shown: secret-named variables and the model keys. */
  secrets: string[];
  /** Said once the task has an id (the warnings of a task carry it). */
  notes: string[];
}

/** The first phase: the spec, the sources, the model, the sandbox's environment. */
export async function resolveTask(input: TaskSpec, deps: { settings: Settings; cwd: string; clock: Clock }): Promise<TaskPlan> {
  // The deadline counts from here, the start of the task (clone and all), not from the container start.
  const startedAt = deps.clock.now();
  const startedMs = deps.clock.monotonicMs();
  const read = await readPipelineEarly(input, deps.cwd);
  const fitted = runtimeLimits(read.runtime, read.limits);
  const spec = fitted.note ? { ...read, limits: fitted.limits } : read;
  const checkDir = await checkDirOf(spec.checkDir, deps.cwd);
  // Steps from flags or a --pipeline file: whether there are check steps is known now. From the repository's own
  // asp.pipeline.json: once it is cloned (feed-workspace.ts).
  if (checkDir && !spec.check?.length && (spec.steps?.length || spec.pipeline)) throw noCheckSteps();
  const source = resolveRepoSource(spec.repo, deps.cwd);
  const extraSources = resolveExtraRepos(spec, deps.cwd);
  const modelChoice = chooseModel(deps.settings.models, deps.cwd);
  if (spec.pipeline === 'asp' && !modelChoice) {
    throw new AspError('BAD_INPUT', 'the asp pipeline needs a model', 'set OPENAI_API_KEY or ANTHROPIC_API_KEY on the host, or ASP_MODEL=cassette:<file> to replay recorded replies');
  }
  const sandboxEnv: Record<string, string> = {};
  for (const name of spec.env) {
    const value = deps.settings.hostEnv[name];
    if (value !== undefined) sandboxEnv[name] = value;
  }
  const notes: string[] = fitted.note ? [fitted.note] : [];
  if (modelChoice) {
    for (const name of MODEL_KEY_VARIABLES.filter((variable) => variable in sandboxEnv)) {
      delete sandboxEnv[name];
      notes.push(`--env ${name} ignored: model keys stay on the host; the sandbox reaches the model through asp's gateway`);
    }
  }
  const secrets = [
    ...Object.entries(sandboxEnv)
      .filter(([name]) => SECRET_NAME.test(name))
      .map(([, value]) => value),
    ...modelSecrets(deps.settings.models),
  ];
  const deadline = deadlineAfter(deps.clock, spec.limits.timeout, startedMs);
  return { spec, runId: generateRunId(startedAt), startedAt, deadline, source, extraSources, modelChoice, checkDir, sandboxEnv, secrets, notes };
}

export function noCheckSteps(): AspError {
  return new AspError('BAD_INPUT', '--check-dir without check steps: nothing would read its files', 'add --check name=command (or a "check" list to the pipeline file)');
}
