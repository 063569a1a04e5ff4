import path from 'node:path';
import { AspError, errorMessage } from '../core/asp-error.js';
import { ASP_PIPELINE, aspPipelineSteps } from './asp-pipeline.js';
import { readCloneFile } from './clone-file.js';
import { readInputFile } from './input-file.js';
import { parseWith, pipelineSchema, type ObservationKind, type Step, type TaskSpec } from './task-spec.js';

export const REPO_PIPELINE_FILE = 'asp.pipeline.json';
const MAX_PIPELINE_BYTES = 1024 * 1024;

export interface ResolvedStep {
  name: string;
  /** The command as people read it (the trace, the log): the shell command, or the argv list quoted as a shell would. */
  run: string;
  /** Run as it is, without a shell: the step was given as a list. */
  argv?: string[] | undefined;
  timeoutMs: number;
  /** The step's span type and its artifact (task-spec.ts stepSchema), for the trace only. */
  type?: ObservationKind | undefined;
  artifact?: string | undefined;
  /** Globs of the test reports the step writes in the repository, copied to `.asp/reports/<step>/` by the runner. */
  reports?: string[] | undefined;
}

/** An argv list as a shell command that means the same: for people to read, never to run. */
function quoted(argv: string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`)).join(' ');
}

/** Reads and validates a pipeline file; the error names the file and the field. */
export async function readPipelineFile(file: string): Promise<Step[]> {
  return (await readPipelineDefinition(file)).steps;
}

/** A pipeline file's steps and, when it has them, its clean-room check steps. */
async function readPipelineDefinition(file: string): Promise<Pipeline> {
  return parsePipeline(await readInputFile(file, MAX_PIPELINE_BYTES, 'pipeline', 'pass --pipeline a readable JSON file'), file);
}

type Pipeline = { steps: Step[]; check?: Step[] | undefined };

function parsePipeline(text: string, file: string): Pipeline {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AspError('BAD_INPUT', `pipeline ${file} is not valid JSON: ${syntaxError(error)}`, 'fix the JSON syntax');
  }
  const parsed = parseWith(pipelineSchema, json, `pipeline ${file}`);
  return { steps: parsed.steps, check: parsed.check };
}

/** V8's JSON error quotes the start of the text ("root:x:0:0"...): the message without that excerpt. */
function syntaxError(error: unknown): string {
  return errorMessage(error).replace(/^(Unexpected token) .*$/s, '$1');
}

/**
 * The steps of a task: `--step` flags, else `--pipeline FILE`, else the repository's own asp.pipeline.json
 * (read from the host's clean clone, as data only). Each step's deadline defaults to the task's.
 */
export async function resolveSteps(spec: TaskSpec, repoDir: string, cwd: string): Promise<ResolvedStep[]> {
  return (await resolvePipeline(spec, repoDir, cwd)).steps;
}

/**
 * The steps of a task and its clean-room check steps: `--check` flags, else the `check` of the pipeline file the
 * steps came from (--pipeline FILE, or the repository's asp.pipeline.json as the host's clone holds it, which the
 * agent's sandbox never touches). No check steps: no check.
 */
export async function resolvePipeline(spec: TaskSpec, repoDir: string, cwd: string): Promise<{ steps: ResolvedStep[]; check: ResolvedStep[] }> {
  let steps: Step[];
  let check: Step[] | undefined = spec.check?.length ? spec.check : undefined;
  if (spec.steps?.length) steps = spec.steps;
  else if (spec.pipeline === ASP_PIPELINE) steps = aspPipelineSteps();
  else if (spec.pipeline) {
    const pipeline = await readPipelineDefinition(path.resolve(cwd, spec.pipeline));
    steps = pipeline.steps;
    check ??= pipeline.check;
  } else {
    // The repository is untrusted: its pipeline is read as a regular file of the clone, never through a link.
    const text = await readCloneFile(repoDir, REPO_PIPELINE_FILE, {
      maxBytes: MAX_PIPELINE_BYTES,
      hint: `commit ${REPO_PIPELINE_FILE} as a regular file, or pass --step name=command or --pipeline FILE`,
    });
    if (text === undefined) {
      throw new AspError('BAD_INPUT', `no steps to run: no --step, no --pipeline, and the repository has no ${REPO_PIPELINE_FILE}`, 'pass --step name=command or --pipeline FILE');
    }
    const pipeline = parsePipeline(text, path.join(repoDir, REPO_PIPELINE_FILE));
    steps = pipeline.steps;
    check ??= pipeline.check;
  }
  const resolve = (step: Step): ResolvedStep => ({
    name: step.name,
    ...(typeof step.run === 'string' ? { run: step.run } : { run: quoted(step.run), argv: step.run }),
    timeoutMs: Math.min(step.timeout ?? spec.limits.timeout, spec.limits.timeout),
    ...(step.type ? { type: step.type } : {}),
    ...(step.artifact ? { artifact: step.artifact } : {}),
    ...(step.reports ? { reports: step.reports } : {}),
  });
  return { steps: steps.map(resolve), check: (check ?? []).map(resolve) };
}

/** Reads a `--pipeline FILE` up front, so a missing or bad file fails before anything is made. */
export async function readPipelineEarly(spec: TaskSpec, cwd: string): Promise<TaskSpec> {
  if (!spec.pipeline || spec.pipeline === ASP_PIPELINE || spec.steps?.length) return spec;
  const pipeline = await readPipelineDefinition(path.resolve(cwd, spec.pipeline));
  return { ...spec, steps: pipeline.steps, ...(spec.check?.length || !pipeline.check ? {} : { check: pipeline.check }) };
}

/** Parses one `--step name=command` (or `--check name=command`) flag. */
export function parseStepFlag(flag: string, option = '--step'): Step {
  const index = flag.indexOf('=');
  if (index <= 0 || index === flag.length - 1) {
    throw new AspError('BAD_INPUT', `${option} "${flag}" is not name=command`, `write it as ${option} test="npm test"`);
  }
  return { name: flag.slice(0, index).trim(), run: flag.slice(index + 1) };
}
