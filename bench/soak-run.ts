/**
 * One soak: a task list of `tasks` identical tasks through `asp batch` (the built CLI, as a user runs it), watched
 * by SoakSampler while it runs, then checked from outside: the daemon for objects of this batch, and the batch's
 * own outputs (exit code, report, journal, trace store, workspaces) for every task once and passed. Shared by
 * bench/soak and test/soak/batch.soak.ts. Needs Docker and `npm run build`.
 *
 * Two kinds of task: `noop` (hello-repo, one step `true`) and `heavy` (a 2 MiB workspace of random bytes, which no
 * layer can compress, checked by hash in the sandbox, and a step writing 1 MiB of base64 to stdout).
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { LABEL, processStartTicks } from '../src/backend/ownership-labels.js';
import { readBatchReport } from '../src/batch/report-file.js';
import { parseJsonWith } from '../src/config/task-spec.js';
import type { BatchSummary } from '../src/batch/batch-report.js';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { readOwnerFile } from '../src/workspace/host-workspace.js';
import { SoakSampler, treeBytes, type ProcessSample, type StoreSizes, type TaskEnd } from './soak-sampler.js';
import type { SoakObservation } from './soak-verdict.js';

export type SoakKind = 'noop' | 'heavy';

export interface SoakPlan {
  kind: SoakKind;
  tasks: number;
  concurrency: number;
}

export interface SoakRun extends SoakObservation {
  plan: SoakPlan;
  /** The task ids, in the list's order. */
  keys: string[];
  /** Every task id starts with it: `soak-<kind>-<random>-`. */
  prefix: string;
  /** `asp.supervisor` of the batch's objects: `host/pid/start-ticks`. */
  supervisor: string;
  exitCode: number | null;
  /** From the spawn to the exit, ms. */
  durationMs: number;
  /** The journal's first start (ms since the epoch): where throughput is counted from. */
  startedAt: number;
  ends: TaskEnd[];
  report: BatchSummary | undefined;
  /** Bytes of the workspaces root after the batch (each task's `.asp/` and owner file). */
  workspaceBytes: number;
  stderrTail: string;
}

export const HEAVY_WORKSPACE_BYTES = 2 * 1024 * 1024;
/** 786,432 random bytes are 1 MiB of base64 (plus a newline every 76 characters). */
const HEAVY_OUTPUT = 'head -c 786432 /dev/urandom | base64 -w 76';

export interface SoakOptions {
  /** The project root: dist/cli/asp.cjs, scripts/git-fixture.mjs, examples/hello-repo. */
  root: string;
  /** Keep the scratch dir (ASP_HOME, workspaces, logs) instead of removing it. */
  keep?: boolean;
  everyMs?: number;
  /** Interrupts the batch (SIGTERM: asp stops its tasks and cleans up, exit 130) so a run past its time ends cleanly. */
  signal?: AbortSignal;
}

export async function runSoak(plan: SoakPlan, options: SoakOptions): Promise<SoakRun> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), `asp-soak-${plan.kind}-`));
  try {
    return await soakIn(scratch, plan, options);
  } finally {
    if (!options.keep) rmSync(scratch, { recursive: true, force: true });
  }
}

async function soakIn(scratch: string, plan: SoakPlan, options: SoakOptions): Promise<SoakRun> {
  const prefix = `soak-${plan.kind}-${randomBytes(3).toString('hex')}-`;
  const keys = Array.from({ length: plan.tasks }, (_, index) => `${prefix}${String(index + 1).padStart(5, '0')}`);
  const repo = await fixtureRepo(plan.kind, scratch, options.root);
  const file = path.join(scratch, 'tasks.jsonl');
  writeFileSync(file, keys.map((id) => JSON.stringify({ id, repo: repo.dir, steps: [{ name: plan.kind, run: repo.step }] })).join('\n') + '\n');
  const home = path.join(scratch, 'home');
  const workspaces = path.join(scratch, 'ws');
  const reportFile = path.join(scratch, 'report.json');

  const docker = Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith('DOCKER_')));
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, ...docker, CI: 'true', ASP_HOME: home, ASP_WORKSPACES: workspaces };
  const stdout = openSync(path.join(scratch, 'stdout.log'), 'w');
  const stderr = openSync(path.join(scratch, 'stderr.log'), 'w');
  const started = performance.now();
  const child = spawn(process.execPath, [path.join(options.root, 'dist', 'cli', 'asp.cjs'), 'batch', file, '--concurrency', String(plan.concurrency), '--report', reportFile], {
    env,
    stdio: ['ignore', stdout, stderr],
  });
  closeSync(stdout);
  closeSync(stderr);
  const pid = child.pid;
  if (pid === undefined) throw new Error('asp batch did not start');
  const supervisor = `${os.hostname()}/${pid}/${processStartTicks(pid) ?? 0}`;
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const sampler = new SoakSampler({ pid, home, ...(options.everyMs ? { everyMs: options.everyMs } : {}) });
  const interrupt = () => child.kill('SIGTERM');
  options.signal?.addEventListener('abort', interrupt, { once: true });
  let exitCode: number | null;
  let final: StoreSizes;
  try {
    exitCode = await exited;
  } finally {
    options.signal?.removeEventListener('abort', interrupt);
    final = sampler.stop();
  }
  const durationMs = performance.now() - started;

  const report = existsSync(reportFile) ? await readBatchReport(reportFile) : undefined;
  const problems = outputProblems({ keys, prefix, exitCode, report, sampler, home, workspaces });
  problems.push(...(await workspaceProblems(keys, workspaces, plan.kind)));
  return {
    plan,
    keys,
    prefix,
    supervisor,
    exitCode,
    durationMs,
    tasks: plan.tasks,
    samples: sampler.samples,
    final,
    startedAt: sampler.journal.starts[0]?.at ?? Number.NaN,
    ends: sampler.journal.ends,
    report,
    leftovers: await leftoversOf(supervisor, prefix),
    problems,
    workspaceBytes: treeBytes(workspaces),
    stderrTail: readFileSync(path.join(scratch, 'stderr.log'), 'utf8').slice(-4000),
  };
}

async function fixtureRepo(kind: SoakKind, scratch: string, root: string): Promise<{ dir: string; step: string }> {
  // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/git-fixture.d.mts; the path is computed because the bench runs from dist/bench, where tsc copies no .mjs
  const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');
  const dir = path.join(scratch, 'repo');
  if (kind === 'noop') {
    makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), dir);
    return { dir, step: 'true' };
  }
  const source = path.join(scratch, 'repo-source');
  mkdirSync(source);
  const blob = randomBytes(HEAVY_WORKSPACE_BYTES);
  writeFileSync(path.join(source, 'blob.bin'), blob);
  writeFileSync(path.join(source, 'README.md'), 'soak: 2 MiB of random bytes\n');
  makeRepoFromDir(source, dir);
  // The step fails unless the whole workspace arrived: its hash is checked before the output is written.
  const digest = createHash('sha256').update(blob).digest('hex');
  return { dir, step: `echo '${digest}  blob.bin' | sha256sum -c --quiet && ${HEAVY_OUTPUT}` };
}

/** What the exit code, the report, the journal and the trace store say is wrong with a batch of `keys`, all passed. */
function outputProblems(run: { keys: string[]; prefix: string; exitCode: number | null; report: BatchSummary | undefined; sampler: SoakSampler; home: string; workspaces: string }): string[] {
  const problems: string[] = [];
  const { keys, report, sampler } = run;
  if (run.exitCode !== 0) problems.push(`asp batch exited ${run.exitCode}`);
  if (!report) problems.push('no --report written');
  else {
    const { total, passed, failed, errors, interrupted, notRun } = report;
    if (total !== keys.length || passed !== keys.length) problems.push(`report: ${JSON.stringify({ total, passed, failed, errors, interrupted, notRun })} of ${keys.length}`);
    const retried = report.tasks.filter((task) => task.attempts !== 1).length;
    if (retried) problems.push(`report: ${retried} task(s) not run in exactly one attempt`);
  }
  if (sampler.journal.damaged) problems.push(`journal: ${sampler.journal.damaged} line(s) that are not records`);
  const once = (records: Array<{ key: string; status?: string }>, what: string) => {
    const byKey = new Map<string, Array<{ status?: string }>>();
    for (const record of records) byKey.set(record.key, [...(byKey.get(record.key) ?? []), record]);
    const wrong = keys.filter((key) => byKey.get(key)?.length !== 1 || (what === 'end' && byKey.get(key)?.[0]?.status !== 'passed'));
    const strangers = [...byKey.keys()].filter((key) => !key.startsWith(run.prefix));
    if (wrong.length) problems.push(`journal: ${wrong.length} task(s) without exactly one ${what}${what === 'end' ? ', passed' : ''} (${wrong.slice(0, 3).join(', ')})`);
    if (strangers.length) problems.push(`journal: ${what}s of tasks not in the list (${strangers.slice(0, 3).join(', ')})`);
  };
  once(sampler.journal.starts, 'start');
  once(sampler.journal.ends, 'end');
  const traces = safeList(path.join(run.home, 'traces'));
  const expected = new Set(keys.map((key) => `${key}.json`));
  if (traces.length !== keys.length || !traces.every((name) => expected.has(name)))
    problems.push(
      `trace store: ${traces.length} file(s) for ${keys.length} tasks (${traces
        .filter((name) => !expected.has(name))
        .slice(0, 3)
        .join(', ')})`,
    );
  return problems;
}

/** A step's record as the host wrote it to `.asp/<step>.json`: only what the soak checks. */
const stepRecordSchema = z.object({ exitCode: z.number(), outputBytes: z.number() });

/**
 * Each task's dir: the owner file says passed, the clone is gone, and the step's record says it exited 0 with all
 * its output counted (1 MiB and more for a heavy task); nothing else in the root.
 */
async function workspaceProblems(keys: string[], workspaces: string, kind: SoakKind): Promise<string[]> {
  const problems: string[] = [];
  const entries = safeList(workspaces);
  const extra = entries.filter((name) => !keys.includes(name));
  if (extra.length) problems.push(`workspaces: unexpected entries ${extra.slice(0, 5).join(', ')}`);
  let notPassed = 0;
  let clones = 0;
  let short = 0;
  for (const key of keys) {
    const dir = path.join(workspaces, key);
    const owner = await readOwnerFile(dir);
    if (owner?.status !== 'passed') notPassed += 1;
    if (existsSync(path.join(dir, 'repo'))) clones += 1;
    const record = parseJsonWith(safeRead(path.join(dir, '.asp', `${kind}.json`)), stepRecordSchema);
    if (!('value' in record) || record.value.exitCode !== 0 || record.value.outputBytes < (kind === 'heavy' ? 1024 * 1024 : 0)) short += 1;
  }
  if (short) problems.push(`workspaces: ${short} step record(s) missing, failed or with less output than the step writes`);
  if (notPassed) problems.push(`workspaces: ${notPassed} owner file(s) missing or not passed`);
  if (clones) problems.push(`workspaces: ${clones} clone(s) left`);
  return problems;
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * The asp-labelled containers and volumes of this batch still on the daemon: owned by its supervisor, or of one of
 * its tasks. Other suites and other engineers may use the same daemon at the same time; their objects are not ours.
 */
export async function leftoversOf(supervisor: string, prefix: string): Promise<{ containers: string[]; volumes: string[] }> {
  const engine = EngineAdapter.fromEnvironment(process.env);
  const filter = [`${LABEL.managed}=true`];
  const ours = (labels: Record<string, string>) => labels[LABEL.supervisor] === supervisor || (labels[LABEL.task] ?? '').startsWith(prefix);
  const [containers, volumes] = await Promise.all([engine.listContainers(filter), engine.listVolumes(filter)]);
  return {
    containers: containers.filter((container) => ours(container.labels)).map((container) => container.name),
    volumes: volumes.filter((volume) => ours(volume.labels)).map((volume) => volume.name),
  };
}

export type { ProcessSample };
