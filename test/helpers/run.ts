import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Settings } from '../../src/config/settings.js';
import { parseTaskSpec, type TaskSpecInput } from '../../src/config/task-spec.js';
import { systemClock } from '../../src/core/clock.js';
import { silentLog } from '../../src/core/log.js';
import { deliverTask, type DeliverDeps } from '../../src/delivery/deliver-task.js';
import { DockerBackend } from '../../src/docker/docker-backend.js';
import { runTask, type RunDeps, type TaskResult } from '../../src/supervisor/run-task.js';
import type { TraceDocument } from '../../src/tracing/trace-model.js';
import { docker } from './docker.js';

export interface RunOutcome {
  result: TaskResult;
  output: string;
}

/** The sandbox backend of the integration suites: Docker, over the real daemon. */
export const backend = new DockerBackend(docker);

/**
 * Runs a task through the real supervisor and the real daemon, then its delivery, as `asp run` does, collecting
 * what it printed. `extra` holds seams of either (a decision at the gate is delivery's).
 */
export async function run(settings: Settings, input: TaskSpecInput, extra: Partial<RunDeps> & Pick<DeliverDeps, 'decision' | 'ask'> = {}): Promise<RunOutcome> {
  let output = '';
  const { decision, ask, ...runExtra } = extra;
  const ran = await runTask(parseTaskSpec(input), {
    backend,
    settings,
    clock: systemClock,
    log: silentLog,
    cwd: process.cwd(),
    writeOutput: (text) => (output += text),
    ...runExtra,
  });
  const result = await deliverTask(ran, { settings, log: silentLog, decision, ask, signal: runExtra.signal });
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
