import { stat } from 'node:fs/promises';
import path from 'node:path';
import { AspError, errorMessage } from '../asp-error.js';
import { ASP_PIPELINE, aspPipelineSteps } from './asp-pipeline.js';
import { readInputFile } from './input-file.js';
import { parseWith, pipelineSchema, type Step, type TaskSpec } from './task-spec.js';

export const REPO_PIPELINE_FILE = 'asp.pipeline.json';
const MAX_PIPELINE_BYTES = 1024 * 1024;

export interface ResolvedStep {
  name: string;
  run: string;
  timeoutMs: number;
}

/** Reads and validates a pipeline file; the error names the file and the field. */
export async function readPipelineFile(file: string): Promise<Step[]> {
  const text = await readInputFile(file, MAX_PIPELINE_BYTES, 'pipeline', 'pass --pipeline a readable JSON file');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AspError('BAD_INPUT', `pipeline ${file} is not valid JSON: ${errorMessage(error)}`, 'fix the JSON syntax');
  }
  return parseWith(pipelineSchema, json, `pipeline ${file}`).steps;
}

/**
 * The steps of a task: `--step` flags, else `--pipeline FILE`, else the repository's own asp.pipeline.json
 * (read from the host's clean clone, as data only). Each step's deadline defaults to the task's.
 */
export async function resolveSteps(spec: TaskSpec, repoDir: string, cwd: string): Promise<ResolvedStep[]> {
  let steps: Step[];
  if (spec.steps?.length) steps = spec.steps;
  else if (spec.pipeline === ASP_PIPELINE) steps = aspPipelineSteps();
  else if (spec.pipeline) steps = await readPipelineFile(path.resolve(cwd, spec.pipeline));
  else {
    const file = path.join(repoDir, REPO_PIPELINE_FILE);
    const present = await stat(file).then(() => true, () => false);
    if (!present) {
      throw new AspError('BAD_INPUT', `no steps to run: no --step, no --pipeline, and the repository has no ${REPO_PIPELINE_FILE}`, 'pass --step name=command or --pipeline FILE');
    }
    steps = await readPipelineFile(file);
  }
  return steps.map((step) => ({ name: step.name, run: step.run, timeoutMs: Math.min(step.timeout ?? spec.limits.timeout, spec.limits.timeout) }));
}

/** Reads a `--pipeline FILE` up front, so a missing or bad file fails before anything is made. */
export async function readPipelineEarly(spec: TaskSpec, cwd: string): Promise<TaskSpec> {
  if (!spec.pipeline || spec.pipeline === ASP_PIPELINE || spec.steps?.length) return spec;
  return { ...spec, steps: await readPipelineFile(path.resolve(cwd, spec.pipeline)) };
}

/** Parses one `--step name=command` flag. */
export function parseStepFlag(flag: string): Step {
  const index = flag.indexOf('=');
  if (index <= 0 || index === flag.length - 1) {
    throw new AspError('BAD_INPUT', `--step "${flag}" is not name=command`, 'write it as --step test="npm test"');
  }
  return { name: flag.slice(0, index).trim(), run: flag.slice(index + 1) };
}
