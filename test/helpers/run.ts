import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Settings } from '../../src/config/settings.js';
import { parseTaskSpec, type TaskSpecInput } from '../../src/config/task-spec.js';
import { systemClock } from '../../src/core/clock.js';
import { silentLog } from '../../src/core/log.js';
import { runTask, type RunDeps, type TaskResult } from '../../src/supervisor/run-task.js';
import type { TraceDocument } from '../../src/tracing/trace-model.js';
import { docker } from './docker.js';

export interface RunOutcome {
  result: TaskResult;
  output: string;
}

/** Runs a task through the real supervisor and the real daemon, collecting what it printed. */
export async function run(settings: Settings, input: TaskSpecInput, extra: Partial<RunDeps> = {}): Promise<RunOutcome> {
  let output = '';
  const result = await runTask(parseTaskSpec(input), {
    docker,
    settings,
    clock: systemClock,
    log: silentLog,
    cwd: process.cwd(),
    writeOutput: (text) => (output += text),
    ...extra,
  });
  return { result, output };
}

export function artifact<T = Record<string, unknown>>(result: TaskResult, name: string): T {
  return JSON.parse(readFileSync(path.join(result.workspacePath, '.asp', name), 'utf8')) as T;
}

export function trace(result: TaskResult): TraceDocument {
  return artifact<TraceDocument>(result, 'trace.json');
}

export function workspaceDirs(settings: Settings): string[] {
  return existsSync(settings.workspacesRoot) ? readdirSync(settings.workspacesRoot) : [];
}
