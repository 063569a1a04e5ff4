/**
 * What the sandbox sends back after its steps: the change bundles and the list of `.asp/` artifacts with their
 * digests. Both read files that steps wrote, so they run in a helper process as the step user (`asp-sandbox
 * --collect`, started by the runner), never in the runner: the runner only reads this helper's stdout, a pipe, and
 * takes from it nothing but well-formed `artifact` and `warning` lines.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { CHANGES_DIR, SANDBOX_ARTIFACTS_DIR, SANDBOX_REPOS_DIR, SANDBOX_TASK_FILE, type ArtifactMessage, type SandboxTask, type WarningMessage } from '../src/protocol/messages.js';
import { LineSplitter } from '../src/protocol/line-splitter.js';
import { bundleChanges, primaryTarget, type BundleTarget } from './change-bundle.js';
import { asStepUser } from './step-user.js';

export const MAX_ARTIFACTS = 1000;
/** The host's own input in `.asp/`: never reported back as an artifact (the host has its own copy). */
const HOST_INPUTS = new Set([SANDBOX_TASK_FILE]);
const MAX_LINE_BYTES = 64 * 1024;

type CollectorLine = ArtifactMessage | WarningMessage;

/** The helper's side: bundles the changes (when the steps passed), then lists every artifact with its digest. */
export async function collect(task: SandboxTask, passed: boolean, emit: (line: CollectorLine) => void): Promise<void> {
  if (passed) await collectChanges(task, (message) => emit({ type: 'warning', message }));
  let files = 0;
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      // One more than the limit tells the runner the list is incomplete.
      if (files > MAX_ARTIFACTS) return;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile() && !HOST_INPUTS.has(full)) {
        files += 1;
        const { sha256, bytes } = await digest(full);
        emit({ type: 'artifact', path: path.relative(SANDBOX_ARTIFACTS_DIR, full), sha256, bytes });
      }
    }
  };
  await walk(SANDBOX_ARTIFACTS_DIR);
}

async function digest(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Bundles what the steps changed; a failure to bundle is a warning, never a failed task. */
async function collectChanges(task: SandboxTask, warn: (message: string) => void): Promise<void> {
  const message = `asp: ${task.task || task.taskId}`.slice(0, 200);
  const targets: Array<[string, BundleTarget]> = [
    ['repo', primaryTarget(task.baseCommit)],
    ...(task.repos ?? []).map((repo): [string, BundleTarget] => [
      `repos/${repo.name}`,
      {
        repoDir: path.join(SANDBOX_REPOS_DIR, repo.name),
        base: repo.baseCommit,
        bundle: path.join(SANDBOX_ARTIFACTS_DIR, CHANGES_DIR, `${repo.name}.bundle`),
        patch: path.join(SANDBOX_ARTIFACTS_DIR, CHANGES_DIR, `${repo.name}.patch`),
      },
    ]),
  ];
  for (const [label, target] of targets) {
    try {
      await bundleChanges(target, task.branch, message);
    } catch (error) {
      warn(`could not bundle the changes of ${label}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    }
  }
}

/**
 * The runner's side: starts the helper as the step user, hands it the task on stdin, and relays what it reports.
 * Resolves with the artifacts' count and bytes, and whether the list is complete.
 */
export function runCollector(task: SandboxTask, passed: boolean, relay: (line: CollectorLine) => void): Promise<{ files: number; bytes: number; complete: boolean }> {
  return new Promise((resolve) => {
    const script = process.argv[1] as string;
    const child = spawn(process.execPath, [script, '--collect'], asStepUser({ stdio: ['pipe', 'pipe', 'ignore'] }));
    let files = 0;
    let bytes = 0;
    let complete = true;
    const lines = new LineSplitter(MAX_LINE_BYTES, (line) => {
      const parsed = parseCollectorLine(line);
      if (!parsed) return;
      if (parsed.type === 'artifact') {
        files += 1;
        if (files > MAX_ARTIFACTS) {
          complete = false;
          return;
        }
        bytes += parsed.bytes;
      }
      relay(parsed);
    }, () => {});
    child.stdout?.on('data', (chunk: Buffer) => lines.push(chunk));
    child.stdin?.on('error', () => {});
    const done = (why?: string) => {
      lines.end();
      if (why) relay({ type: 'warning', message: `the artifact collector ${why}` });
      resolve({ files: Math.min(files, MAX_ARTIFACTS), bytes, complete: complete && !why });
    };
    child.on('error', (error) => done(`could not start: ${error.message}`));
    child.on('close', (code, signal) => done(code === 0 ? undefined : `failed (${signal ?? `exit ${code}`})`));
    child.stdin?.end(JSON.stringify({ task, passed }));
  });
}

/** Only an `artifact` or a `warning`, each field checked: the helper runs as the step user and is not trusted. */
export function parseCollectorLine(line: string): CollectorLine | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const record = raw as Record<string, unknown>;
  if (record.type === 'warning' && typeof record.message === 'string') return { type: 'warning', message: record.message.slice(0, 1000) };
  if (
    record.type === 'artifact' &&
    typeof record.path === 'string' && record.path.length > 0 && record.path.length <= 4096 &&
    typeof record.sha256 === 'string' && /^[0-9a-f]{64}$/.test(record.sha256) &&
    typeof record.bytes === 'number' && Number.isSafeInteger(record.bytes) && record.bytes >= 0
  ) {
    return { type: 'artifact', path: record.path, sha256: record.sha256, bytes: record.bytes };
  }
  return undefined;
}

/** The helper's entry: `asp-sandbox --collect`, the task and the verdict as JSON on stdin, lines on stdout. */
export async function collectorMain(): Promise<void> {
  let input = '';
  for await (const chunk of process.stdin) input += (chunk as Buffer).toString('utf8');
  const { task, passed } = JSON.parse(input) as { task: SandboxTask; passed: boolean };
  await collect(task, passed, (line) => process.stdout.write(JSON.stringify(line) + '\n'));
}
