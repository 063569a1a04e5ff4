import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LABEL } from '../../src/backend/ownership-labels.js';
import { asp } from '../helpers/cli.js';
import { docker, dockerAvailable } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';

const TEST_ID = randomBytes(3).toString('hex');
const PRELOAD = pathToFileURL(path.resolve(import.meta.dirname, '..', 'fixtures', 'clock-jump.mjs')).href;
const HOURS_3 = 3 * 3_600_000;
const EXPIRY_GRACE_MS = 10 * 60_000;

interface Observation {
  name: string;
  startTime: string;
  endTime: string | null;
}
interface StepOutcome {
  name: string;
  status: string;
  durationMs: number | null;
}
interface RunResult {
  status: string;
  exitCode: number;
  durationMs: number;
  error?: string;
  steps: StepOutcome[];
  check: { status: string; steps: StepOutcome[] } | null;
}

interface JumpedRun {
  code: number | null;
  stderr: string;
  result: RunResult;
  trace: { trace: { timestamp: string; output: { durationMs: number } }; observations: Observation[] };
  owner: { createdAt: string; finishedAt?: string; expiresAt: string };
  /** The expires-at label of every sandbox the task made, as seen while it ran. */
  expiries: Map<string, string>;
  /** Real wall time (this process's clock is not shifted) when asp started and when it exited. */
  realStart: number;
  realEnd: number;
  /** When the clock of asp was set, on this process's real clock. */
  jumpedAt: number;
}

const ids: string[] = [];

/**
 * Runs `asp run --json` with its wall clock set by `jumpMs` once its first step is running (its step.start is in
 * events.jsonl), and says what came of it, with the real times around it.
 */
async function runWithJump(id: string, args: string[], jumpMs: number): Promise<JumpedRun> {
  ids.push(id);
  const home = mkdtempSync(path.join(os.tmpdir(), 'asp-clock-'));
  const workspaces = path.join(home, 'workspaces');
  const clockFile = path.join(home, 'clock-offset-ms');
  const expiries = new Map<string, string>();
  const realStart = Date.now();
  let finished = false;
  const running = asp(['run', '--repo', repoWith({ 'README.md': 'clock\n' }), '--id', id, '--json', ...args], {
    ASP_HOME: home,
    ASP_WORKSPACES: workspaces,
    DOCKER_HOST: process.env.DOCKER_HOST,
    NODE_OPTIONS: `--import=${PRELOAD}`,
    ASP_TEST_CLOCK_FILE: clockFile,
  }).finally(() => (finished = true));
  const events = path.join(workspaces, id, '.asp-host', 'events.jsonl');
  const until = Date.now() + 90_000;
  while (!finished && !(existsSync(events) && readFileSync(events, 'utf8').includes('"step.start"')) && Date.now() < until) await sleep(50);
  writeFileSync(clockFile, String(jumpMs));
  const jumpedAt = Date.now();
  // The sandboxes' labels as they are made: the check's sandbox is made after the clock was set.
  while (!finished) {
    for (const container of await docker.listContainers([`${LABEL.task}=${id}`]).catch(() => [])) {
      const expiresAt = container.labels[LABEL.expiresAt];
      if (expiresAt) expiries.set(container.name, expiresAt);
    }
    await sleep(200);
  }
  const ran = await running;
  const realEnd = Date.now();
  const dir = path.join(workspaces, id);
  return {
    code: ran.code,
    stderr: ran.stderr,
    result: JSON.parse(ran.stdout) as RunResult,
    trace: JSON.parse(readFileSync(path.join(dir, '.asp', 'trace.json'), 'utf8')) as JumpedRun['trace'],
    owner: JSON.parse(readFileSync(path.join(dir, '.asp-owner.json'), 'utf8')) as JumpedRun['owner'],
    expiries,
    realStart,
    realEnd,
    jumpedAt,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * What a run recorded of time must agree with the real time around it, whatever its clock was set to on the way:
 * every timestamp between its real start and end, no span ending before it started, no duration below 0 or over
 * the real time the run took.
 */
function expectSaneTimes(run: JumpedRun): void {
  const slack = 1000;
  const within = (iso: string) => {
    const at = Date.parse(iso);
    expect(at, iso).toBeGreaterThanOrEqual(run.realStart - slack);
    expect(at, iso).toBeLessThanOrEqual(run.realEnd + slack);
  };
  const realMs = run.realEnd - run.realStart;
  expect(run.result.durationMs).toBeGreaterThan(0);
  expect(run.result.durationMs).toBeLessThanOrEqual(realMs);
  for (const step of [...run.result.steps, ...(run.result.check?.steps ?? [])]) {
    if (step.durationMs === null) continue;
    expect(step.durationMs, step.name).toBeGreaterThanOrEqual(0);
    expect(step.durationMs, step.name).toBeLessThanOrEqual(realMs);
  }
  within(run.trace.trace.timestamp);
  expect(run.trace.trace.output.durationMs).toBe(run.result.durationMs);
  for (const observation of run.trace.observations) {
    within(observation.startTime);
    if (observation.endTime === null) continue;
    within(observation.endTime);
    expect(Date.parse(observation.endTime), observation.name).toBeGreaterThanOrEqual(Date.parse(observation.startTime));
  }
  within(run.owner.createdAt);
  if (run.owner.finishedAt) within(run.owner.finishedAt);
}

/**
 * Issue 21: the wall clock set forward or back while a task runs. Deadlines count on the monotonic clock, so the
 * task's --timeout neither fires early nor late; what the task records (durations, the trace, its owner file) stays
 * in step with real time; and its expiry, read off the wall clock once at its start, is not moved.
 */
describe.skipIf(!dockerAvailable)('the wall clock set forward and back during a task', () => {
  afterAll(async () => {
    // asp removes its sandboxes itself, however its clock was set; whatever a failed run left goes here, and fails.
    const left: string[] = [];
    for (const id of ids) {
      for (const container of await docker.listContainers([`${LABEL.task}=${id}`])) {
        left.push(container.name);
        await docker.removeContainer(container.id);
      }
      for (const volume of await docker.listVolumes([`${LABEL.task}=${id}`])) {
        left.push(volume.name);
        await docker.removeVolume(volume.name);
      }
    }
    expect(left).toEqual([]);
  });

  it('set 3 h forward mid-step: the task does not time out early (nor its clean-room check), and lasts what it really lasted', { timeout: 180_000 }, async () => {
    const run = await runWithJump(`clock-forward-${TEST_ID}`, ['--timeout', '60s', '--step', 'work=echo started; sleep 4', '--check', 'verify=sleep 2'], HOURS_3);

    expect(run.code, run.stderr).toBe(0);
    expect(run.result).toMatchObject({ status: 'passed', exitCode: 0, check: { status: 'passed' } });
    expect(run.result.steps).toEqual([expect.objectContaining({ name: 'work', status: 'passed' })]);
    expect(run.result.steps[0]?.durationMs).toBeGreaterThanOrEqual(4000);
    expect(run.result.check?.steps[0]?.durationMs).toBeGreaterThanOrEqual(2000);
    expectSaneTimes(run);
    // The expiry was read off the wall clock once, at the start: both sandboxes carry it, the check's too, which
    // was made after the clock was set 3 h on.
    expect(Date.parse(run.owner.expiresAt) - Date.parse(run.owner.createdAt)).toBe(60_000 + EXPIRY_GRACE_MS);
    expect(Math.abs(Date.parse(run.owner.expiresAt) - (run.realStart + 60_000 + EXPIRY_GRACE_MS))).toBeLessThan(10_000);
    expect(run.expiries.size).toBe(2);
    expect(new Set(run.expiries.values())).toEqual(new Set([run.owner.expiresAt]));
  });

  it('set 3 h back mid-step: a short --timeout still fires on time, with durations of at least 0 and close to real', { timeout: 180_000 }, async () => {
    const run = await runWithJump(`clock-back-${TEST_ID}`, ['--timeout', '12s', '--step', 'work=echo started; sleep 2', '--check', 'verify=sleep 600'], -HOURS_3);

    expect(run.code, run.stderr).toBe(124);
    // The host's own deadline stopped it, not the sandbox's backstop 5 s later, and not 3 h later.
    expect(run.result).toMatchObject({ status: 'timeout', exitCode: 124, error: 'the task passed its 12000 ms deadline' });
    expect(run.realEnd - run.realStart).toBeLessThan(12_000 + 20_000);
    expect(run.result.durationMs).toBeGreaterThanOrEqual(12_000);
    // The check's step was killed at the deadline: its duration is the host's, from its start to the kill.
    const verify = run.result.check?.steps[0];
    expect(verify).toMatchObject({ name: 'verify', status: 'timeout' });
    expect(verify?.durationMs).toBeGreaterThan(1000);
    expect(verify?.durationMs).toBeLessThan(12_000);
    expectSaneTimes(run);
    expect(Date.parse(run.owner.expiresAt) - Date.parse(run.owner.createdAt)).toBe(12_000 + EXPIRY_GRACE_MS);
    expect(new Set(run.expiries.values())).toEqual(new Set([run.owner.expiresAt]));
  });

  it('set 3 h back while a step runs past the deadline: the step is stopped at it, and its duration is the real one', { timeout: 180_000 }, async () => {
    const run = await runWithJump(`clock-back-step-${TEST_ID}`, ['--timeout', '8s', '--step', 'work=echo started; sleep 600'], -HOURS_3);

    expect(run.code, run.stderr).toBe(124);
    expect(run.result).toMatchObject({ status: 'timeout', exitCode: 124, error: 'the task passed its 8000 ms deadline' });
    const work = run.result.steps[0];
    expect(work).toMatchObject({ name: 'work', status: 'timeout' });
    // From its start to the kill at the deadline: at least from when this test saw it start (and set the clock) to 8 s
    // after asp was spawned (the task starts later than that, once node is up), and never the whole 8 s.
    expect(work?.durationMs).toBeGreaterThan(run.realStart + 8000 - run.jumpedAt - 500);
    expect(work?.durationMs).toBeLessThan(8000);
    expectSaneTimes(run);
  });
});
