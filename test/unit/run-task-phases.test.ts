import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { readSettings, type Settings } from '../../src/config/settings.js';
import { parseTaskSpec, type TaskSpecInput } from '../../src/config/task-spec.js';
import { AspError, exitCodeFor } from '../../src/core/asp-error.js';
import type { Clock } from '../../src/core/clock.js';
import { silentLog } from '../../src/core/log.js';
import { deliverTask } from '../../src/delivery/deliver-task.js';
import { runTask, type RunDeps, type TaskRun } from '../../src/supervisor/run-task.js';
import { TaskEvents } from '../../src/supervisor/task-events.js';
import { FakeBackend, type RunnerScript } from '../helpers/fake-backend.js';
import { repoWith } from '../helpers/repos.js';

/**
 * The clock of the task (its start, its deadline, step durations the host measures, the trace): the real one, plus
 * what a test adds with advance(), as if that much time passed at once. The session's timers are real ones, so the
 * deadlines must count on real time: a clock that stood still would never let one pass.
 */
class FakeClock implements Clock {
  #offsetMs = 0;
  #wallOffsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.#offsetMs + this.#wallOffsetMs);
  }
  monotonicMs(): number {
    return performance.now() + this.#offsetMs;
  }
  advance(ms: number): void {
    this.#offsetMs += ms;
  }
  /** Sets the wall clock alone forward or back by `ms`, as NTP or a user would: no time passes. */
  setWall(ms: number): void {
    this.#wallOffsetMs += ms;
  }
}

interface Harness {
  backend: FakeBackend;
  settings: Settings;
  clock: FakeClock;
  /** What the task printed (step output, prefixed). */
  output: () => string;
  run(input: Partial<TaskSpecInput>, extra?: Partial<RunDeps> & { onOutput?: (text: string) => void }): Promise<TaskRun>;
}

let repo: string;
beforeAll(() => {
  repo = repoWith({ 'README.md': '# fixture\n' });
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** The temp dirs of the harnesses: the host side of every task is real, on disk. */
const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

function harness(script: RunnerScript = {}): Harness {
  const base = mkdtempSync(path.join(os.tmpdir(), 'asp-phases-'));
  scratch.push(base);
  const settings = readSettings({ PATH: process.env.PATH, HOME: base, ASP_WORKSPACES: path.join(base, 'workspaces'), ASP_HOME: path.join(base, 'home') });
  const backend = new FakeBackend(script);
  const clock = new FakeClock();
  let output = '';
  return {
    backend,
    settings,
    clock,
    output: () => output,
    run: (input, { onOutput, ...extra } = {}) =>
      runTask(parseTaskSpec({ repo, task: 'Tidy the README', steps: [{ name: 'build', run: 'make' }], ...input }), {
        backend,
        settings,
        clock,
        log: silentLog,
        cwd: base,
        writeOutput: (text) => {
          output += text;
          onOutput?.(text);
        },
        traceMode: 'off',
        ...extra,
      }),
  };
}

/** What `calls` says was removed, in order. */
const removals = (backend: FakeBackend) => backend.calls.filter((call) => call.startsWith('remove '));
const workspaceDirs = (settings: Settings) => (existsSync(settings.workspacesRoot) ? readdirSync(settings.workspacesRoot) : []);
const rejection = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected runTask to reject');
    },
    (error: unknown) => error,
  );

describe('runTask over a fake backend', () => {
  describe('a task that runs to its end', () => {
    it('passes when its steps pass, with the sandbox made, run and removed in order, and its record kept', async () => {
      const h = harness({ steps: { build: { output: 'built\n', durationMs: 40 }, test: { output: 'ok 1\n', durationMs: 70 } }, artifacts: { 'notes.txt': 'from the runner\n' } });
      const ran = await h.run({
        steps: [
          { name: 'build', run: 'make' },
          { name: 'test', run: 'make test' },
        ],
      });
      const result = await deliverTask(ran, { settings: h.settings, log: silentLog });

      expect(result).toMatchObject({ status: 'passed', exitCode: 0, failedStep: null, kept: false, delivery: null });
      expect(result.steps).toEqual([
        { name: 'build', status: 'passed', exitCode: 0, durationMs: 40 },
        { name: 'test', status: 'passed', exitCode: 0, durationMs: 70 },
      ]);
      expect(h.backend.calls).toEqual([
        'describe',
        'prepareImage',
        'create volume vol-1',
        'create container box-1',
        'open box-1',
        'wait box-1',
        'fetchArtifacts box-1',
        'remove container box-1',
        'remove volume vol-1',
      ]);
      // The runner ran nothing before the host, having checked its hello, said start.
      expect(h.backend.runnerLog).toEqual(['hello', 'task', 'workspace.end', 'start', 'step.start build', 'step.end build 0', 'step.start test', 'step.end test 0', 'exit 0']);
      expect(h.backend.leftovers()).toEqual([]);
      expect(h.output()).toBe('[build] built\n[test] ok 1\n');
      // The host dir stays as the task's record: its .asp/ (what came out, asp's copies), not its clone.
      expect(readFileSync(path.join(result.workspacePath, '.asp', 'notes.txt'), 'utf8')).toBe('from the runner\n');
      expect(result.artifacts).toEqual(expect.arrayContaining(['notes.txt', 'trace.json', 'events.jsonl', 'task.json']));
      expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(false);
      expect(JSON.parse(readFileSync(path.join(result.workspacePath, '.asp', 'result.json'), 'utf8'))).toMatchObject({ status: 'passed', exitCode: 0 });
    });

    it('starts the sandbox as soon as it exists, beside the clone: the runner boots while the workspace is made ready', async () => {
      const h = harness();
      const ran = await h.run({});
      const span = (name: string) => {
        const found = ran.trace.document.observations.find((observation) => observation.name === `host:${name}`);
        if (!found?.endTime) throw new Error(`no finished ${name} span`);
        return { start: new Date(found.startTime).getTime(), end: new Date(found.endTime).getTime() };
      };
      // The fake engine makes its sandbox at once; the clone is host git on a real repository, which takes longer.
      expect(span('sandbox-start').start).toBeLessThan(span('clone').end);
      expect(span('sandbox-start').start).toBeGreaterThanOrEqual(span('container-create').end);
      expect(ran.result.status).toBe('passed');
      expect(h.backend.leftovers()).toEqual([]);
    });

    it('removes a sandbox whose clone failed only once its start answered, and leaves nothing', async () => {
      const h = harness();
      const opening = h.backend.hold('open');
      const ran = h.run({ ref: 'no-such-branch' }).then(
        () => undefined,
        (error: unknown) => error,
      );
      await opening.reached;
      // The clone has failed by now (a branch the repository does not have); the start is still in flight.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(h.backend.calls.filter((call) => call.startsWith('remove'))).toEqual([]);
      opening.release();
      const error = await ran;
      expect(error).toBeInstanceOf(AspError);
      expect(h.backend.calls.slice(-3)).toEqual(['open box-1', 'remove container box-1', 'remove volume vol-1']);
      expect(h.backend.leftovers()).toEqual([]);
    });

    it('says a runner killed with 137 was killed (SIGKILL), not out of memory, when the engine does not say OOMKilled', async () => {
      const h = harness({ steps: { build: { killsRunner: 'sigkill' } } });
      const result = await deliverTask(await h.run({}), { settings: h.settings, log: silentLog });
      expect(result.warnings).toContain('the sandbox ended without reporting (exit 137: killed (SIGKILL))');
      expect(result.warnings.join('\n')).not.toContain('memory');
    });

    it('says out of memory for a 137 only when the engine says OOMKilled', async () => {
      const h = harness({ steps: { build: { killsRunner: 'oom' } } });
      const result = await deliverTask(await h.run({}), { settings: h.settings, log: silentLog });
      expect(result.warnings).toContain('the sandbox ended without reporting (exit 137: killed, out of memory (the engine says OOMKilled))');
    });

    it('lists in artifacts every file its .asp/ ends with, result.json (written from that very list) included', async () => {
      const h = harness({ artifacts: { 'notes.txt': 'from the runner\n' } });
      const result = await deliverTask(await h.run({ steps: [{ name: 'build', run: 'make' }] }), { settings: h.settings, log: silentLog });
      const asp = path.join(result.workspacePath, '.asp');
      const onDisk = readdirSync(asp, { recursive: true, withFileTypes: true })
        .filter((entry) => entry.isFile())
        .map((entry) => path.relative(asp, path.join(entry.parentPath, entry.name)))
        .sort();
      expect(result.artifacts).toContain('result.json');
      expect(result.artifacts).toEqual(onDisk);
      expect(JSON.parse(readFileSync(path.join(asp, 'result.json'), 'utf8'))).toMatchObject({ artifacts: onDisk });
    });

    it('fails when a step exits non-zero, naming that step with the tail of its output, and runs no later step', async () => {
      const h = harness({ steps: { lint: { output: 'src/a.ts:3 unused variable\n', exitCode: 2 } } });
      const { result } = await h.run({
        steps: [
          { name: 'lint', run: 'npm run lint' },
          { name: 'test', run: 'npm test' },
        ],
      });

      expect(result).toMatchObject({ status: 'failed', exitCode: 1 });
      expect(result.failedStep).toEqual({
        step: 'lint',
        status: 'failed',
        exitCode: 2,
        reason: 'step lint exited 2',
        outputTail: 'src/a.ts:3 unused variable\n',
        firstFailingTest: null,
        logs: [path.join(result.workspacePath, '.asp', 'events.jsonl'), path.join(result.workspacePath, '.asp', 'lint.json')],
      });
      expect(result.steps.map((step) => [step.name, step.status])).toEqual([
        ['lint', 'failed'],
        ['test', 'skipped'],
      ]);
      expect(h.backend.leftovers()).toEqual([]);
    });
  });

  describe('deadlines', () => {
    it('stops a step past its own deadline by killing the sandbox: timeout, exit 124, nothing left', async () => {
      const h = harness({ steps: { slow: { output: 'sleeping\n', hang: true } } });
      // The host has seen the step start when it prints its output: five seconds pass on the task's clock.
      const { result } = await h.run({ steps: [{ name: 'slow', run: 'sleep 600', timeout: '200ms' }] }, { onOutput: () => h.clock.advance(5000) });

      expect(result).toMatchObject({ status: 'timeout', exitCode: 124, error: 'step "slow" passed its 200 ms deadline' });
      expect(h.backend.calls).toContain('kill box-1');
      expect(h.backend.calls.indexOf('kill box-1')).toBeLessThan(h.backend.calls.indexOf('remove container box-1'));
      // Killed before it could end, the step's duration is the host's own, from its start to the kill: the five
      // seconds and the 200 ms it really ran.
      expect(result.steps).toEqual([{ name: 'slow', status: 'timeout', exitCode: 124, durationMs: expect.any(Number) }]);
      expect(result.steps[0]?.durationMs).toBeGreaterThanOrEqual(5200);
      expect(result.steps[0]?.durationMs).toBeLessThan(5200 + 5000);
      expect(result.failedStep).toMatchObject({ step: 'slow', reason: 'step slow passed its deadline', outputTail: 'sleeping\n' });
      // The sandbox could not write the step's record: the host wrote it from the protocol.
      expect(JSON.parse(readFileSync(path.join(result.workspacePath, '.asp', 'slow.json'), 'utf8'))).toMatchObject({ name: 'slow', writtenBy: 'host', exitCode: 124 });
      expect(h.backend.leftovers()).toEqual([]);
    });

    it('times out a task whose deadline passed while its image was prepared, before any step runs', async () => {
      const h = harness();
      const image = h.backend.hold('prepareImage');
      const running = h.run({ limits: { timeout: '300ms' } });
      await image.reached;
      await new Promise((resolve) => setTimeout(resolve, 400));
      image.release();
      const { result } = await running;

      expect(result).toMatchObject({ status: 'timeout', exitCode: 124, error: 'the task passed its 300 ms deadline' });
      expect(h.backend.runnerLog).not.toContain('start');
      expect(result.steps).toEqual([{ name: 'build', status: 'skipped', exitCode: null, durationMs: null }]);
      expect(h.backend.calls).toContain('kill box-1');
      expect(h.backend.leftovers()).toEqual([]);
    });
  });

  describe('the wall clock set forward or back during a task', () => {
    const HOURS_3 = 3 * 3_600_000;

    it('set 3 h forward while the image is prepared: the task does not time out, and lasts what it really lasted', async () => {
      const h = harness();
      const image = h.backend.hold('prepareImage');
      const running = h.run({ limits: { timeout: '60s' } });
      await image.reached;
      h.clock.setWall(HOURS_3);
      image.release();
      const { result, startedAt, finishedAt, owner } = await running;

      expect(result).toMatchObject({ status: 'passed', exitCode: 0 });
      expect(result.durationMs).toBeGreaterThanOrEqual(0);
      expect(result.durationMs).toBeLessThan(10_000);
      expect(finishedAt.getTime() - startedAt.getTime()).toBe(result.durationMs);
      // The expiry was read off the wall clock at the start, before it was set on.
      expect(owner.expiresAt.getTime()).toBe(startedAt.getTime() + 60_000 + 10 * 60_000);
      expect(Math.abs(startedAt.getTime() - Date.now())).toBeLessThan(10_000);
    });

    it('set 3 h back while the image is prepared: the deadline still passes on time', async () => {
      const h = harness();
      const image = h.backend.hold('prepareImage');
      const running = h.run({ limits: { timeout: '300ms' } });
      await image.reached;
      h.clock.setWall(-HOURS_3);
      await new Promise((resolve) => setTimeout(resolve, 400));
      image.release();
      const { result } = await running;

      expect(result).toMatchObject({ status: 'timeout', exitCode: 124, error: 'the task passed its 300 ms deadline' });
      expect(h.backend.runnerLog).not.toContain('start');
      expect(result.durationMs).toBeGreaterThanOrEqual(400);
      expect(result.durationMs).toBeLessThan(10_000);
    });
  });

  describe('interrupts', () => {
    it.each(['prepareImage', 'create container'] as const)('interrupts a task while its sandbox is being made (%s): no step runs, exit 130, nothing left', async (operation) => {
      const h = harness();
      const interrupt = new AbortController();
      const gate = h.backend.hold(operation);
      const running = h.run({}, { signal: interrupt.signal });
      await gate.reached;
      interrupt.abort();
      gate.release();
      const { result } = await running;

      expect(result).toMatchObject({ status: 'interrupted', exitCode: 130, error: 'interrupted' });
      // The making is not cut short: what was in flight finishes, and the session that follows stops at once.
      expect(h.backend.runnerLog).not.toContain('start');
      expect(result.steps).toEqual([{ name: 'build', status: 'skipped', exitCode: null, durationMs: null }]);
      expect(h.backend.calls).toContain('kill box-1');
      expect(removals(h.backend)).toEqual(['remove container box-1', 'remove volume vol-1']);
      expect(h.backend.leftovers()).toEqual([]);
    });

    it('never tells the runner to start once an interrupt ended the session, however slow the kill', async () => {
      const h = harness();
      const interrupt = new AbortController();
      interrupt.abort();
      const kill = h.backend.hold('kill');
      const running = h.run({}, { signal: interrupt.signal });
      await kill.reached;
      // The whole workspace arrives while the kill is under way; the hello checked out long before.
      await h.backend.seen('workspace.end');
      await new Promise((resolve) => setTimeout(resolve, 50));
      kill.release();
      const { result } = await running;

      expect(result).toMatchObject({ status: 'interrupted', exitCode: 130 });
      expect(h.backend.runnerLog).toEqual(['hello', 'task', 'workspace.end', 'exit 137']);
      expect(h.backend.leftovers()).toEqual([]);
    });

    it('interrupts a running step: the sandbox is killed, the step is interrupted, .asp/ is still copied out', async () => {
      const h = harness({ steps: { agent: { output: 'thinking\n', hang: true } }, artifacts: { 'partial.txt': 'half done\n' } });
      const interrupt = new AbortController();
      const { result } = await h.run({ steps: [{ name: 'agent', run: 'agent --go' }] }, { signal: interrupt.signal, onOutput: () => interrupt.abort() });

      expect(result).toMatchObject({ status: 'interrupted', exitCode: 130 });
      expect(result.steps).toEqual([expect.objectContaining({ name: 'agent', status: 'interrupted', exitCode: 130 })]);
      expect(result.failedStep).toMatchObject({ step: 'agent', reason: 'step agent was interrupted' });
      expect(h.backend.calls).toEqual(expect.arrayContaining(['kill box-1', 'fetchArtifacts box-1']));
      expect(readFileSync(path.join(result.workspacePath, '.asp', 'partial.txt'), 'utf8')).toBe('half done\n');
      expect(h.backend.leftovers()).toEqual([]);
    });

    it('lets a copy-out that an interrupt meets finish: the steps had ended, their verdict stands', async () => {
      const h = harness({ artifacts: { 'report.md': 'all good\n' } });
      const interrupt = new AbortController();
      const copy = h.backend.hold('fetchArtifacts');
      const running = h.run({}, { signal: interrupt.signal });
      await copy.reached;
      interrupt.abort();
      copy.release();
      const { result } = await running;

      expect(result).toMatchObject({ status: 'passed', exitCode: 0 });
      expect(readFileSync(path.join(result.workspacePath, '.asp', 'report.md'), 'utf8')).toBe('all good\n');
      expect(h.backend.calls).not.toContain('kill box-1');
      expect(h.backend.leftovers()).toEqual([]);
    });

    it('skips the copy-out on a second interrupt: only the removal is left', async () => {
      const h = harness({ steps: { agent: { output: 'thinking\n', hang: true } }, artifacts: { 'partial.txt': 'half done\n' } });
      const interrupt = new AbortController();
      const force = new AbortController();
      const twice = () => {
        interrupt.abort();
        force.abort();
      };
      const { result } = await h.run({ steps: [{ name: 'agent', run: 'agent --go' }] }, { signal: interrupt.signal, forceSignal: force.signal, onOutput: twice });

      expect(result).toMatchObject({ status: 'interrupted', exitCode: 130 });
      expect(h.backend.calls).not.toContain('fetchArtifacts box-1');
      expect(existsSync(path.join(result.workspacePath, '.asp', 'partial.txt'))).toBe(false);
      expect(removals(h.backend)).toEqual(['remove container box-1', 'remove volume vol-1']);
      expect(h.backend.leftovers()).toEqual([]);
    });

    it('cuts a copy-out in flight short on a second interrupt, and still removes everything', async () => {
      const h = harness({ stallArtifacts: true });
      const interrupt = new AbortController();
      const force = new AbortController();
      const running = h.run({}, { signal: interrupt.signal, forceSignal: force.signal });
      await h.backend.seen('fetchArtifacts box-1');
      interrupt.abort();
      force.abort();
      const { result } = await running;

      expect(result.warnings).toContain('copy-out cut short by a second interrupt: .asp/ holds what arrived before it');
      expect(result.change).toBeNull();
      expect(removals(h.backend)).toEqual(['remove container box-1', 'remove volume vol-1']);
      expect(h.backend.leftovers()).toEqual([]);
    });
  });

  describe('cleanup', () => {
    it('removes the container, then its volume, as soon as .asp/ is in hand (before the events file closes)', async () => {
      const h = harness();
      const close = TaskEvents.prototype.close;
      vi.spyOn(TaskEvents.prototype, 'close').mockImplementation(function (this: TaskEvents) {
        h.backend.calls.push('close events');
        return close.call(this);
      });
      const { result } = await h.run({});

      expect(result.status).toBe('passed');
      expect(h.backend.calls.slice(-3)).toEqual(['remove container box-1', 'remove volume vol-1', 'close events']);
      // The artifacts were in hand first: the removal began after them, not before.
      expect(h.backend.calls.indexOf('remove container box-1')).toBeGreaterThan(h.backend.calls.indexOf('fetchArtifacts box-1'));
      expect(h.backend.calls).toContain('fetchArtifacts box-1');
      // Closed before asp copied it for the user: the copy holds the runner's last word.
      const events = readFileSync(path.join(result.workspacePath, '.asp', 'events.jsonl'), 'utf8')
        .trim()
        .split('\n');
      expect(JSON.parse(events.at(-1) ?? '{}')).toMatchObject({ type: 'task.end', status: 'passed' });
    });

    it('leaves the sandbox of a task that ran with --keep, container and volume', async () => {
      const h = harness();
      const { result } = await h.run({ keep: true });

      expect(result).toMatchObject({ status: 'passed', kept: true });
      expect(removals(h.backend)).toEqual([]);
      expect(h.backend.leftovers()).toEqual(['container box-1', 'volume vol-1']);
      expect(existsSync(path.join(result.workspacePath, 'repo', 'README.md'))).toBe(true);
    });

    it('leaves nothing of a --keep task that failed before it started: keep is for sandboxes that ran', async () => {
      const h = harness();
      h.backend.fail('create container', new AspError('DOCKER_FAILED', 'the daemon refused the container'));
      const error = await rejection(h.run({ keep: true }));

      expect(error).toMatchObject({ code: 'DOCKER_FAILED' });
      expect(removals(h.backend)).toEqual(['remove volume vol-1']);
      expect(h.backend.leftovers()).toEqual([]);
      expect(workspaceDirs(h.settings)).toEqual([]);
    });

    it('finishes a task whose container removal fails, still tries the volume, and says asp reap will finish it', async () => {
      const h = harness();
      h.backend.fail('remove container', new AspError('DOCKER_FAILED', 'the daemon refused to remove box-1'), { times: 1 });
      const { result } = await h.run({});

      expect(result).toMatchObject({ status: 'passed', exitCode: 0 });
      expect(removals(h.backend)).toEqual(['remove container box-1', 'remove volume vol-1']);
      // The volume is still mounted by the container that stayed: refused too, and said too.
      expect(result.warnings).toEqual([
        'cleanup incomplete: the daemon refused to remove box-1 (asp reap will finish it)',
        'cleanup incomplete: cannot remove volume vol-1: volume is in use (asp reap will finish it)',
      ]);
      expect(h.backend.leftovers()).toEqual(['container box-1', 'volume vol-1']);
      expect(JSON.parse(readFileSync(path.join(result.workspacePath, '.asp', 'result.json'), 'utf8')).warnings).toEqual(result.warnings);
    });
  });

  describe('an engine that fails the task', () => {
    it('rejects with DOCKER_UNAVAILABLE (exit 3) when the daemon is gone, having made nothing and left no host dir', async () => {
      const h = harness();
      h.backend.fail('describe', new AspError('DOCKER_UNAVAILABLE', 'Docker at unix:///fake.sock does not answer (ECONNREFUSED)', 'start the Docker daemon'));
      const error = await rejection(h.run({}));

      expect(error).toBeInstanceOf(AspError);
      expect(error).toMatchObject({ code: 'DOCKER_UNAVAILABLE' });
      expect(exitCodeFor((error as AspError).code)).toBe(3);
      expect(h.backend.calls).toEqual(['describe']);
      expect(h.backend.leftovers()).toEqual([]);
      expect(workspaceDirs(h.settings)).toEqual([]);
    });

    it('removes the volume of a sandbox the engine did not harden (HARDENING_IGNORED at creation)', async () => {
      const h = harness();
      h.backend.fail('create container', new AspError('HARDENING_IGNORED', 'the engine dropped CapDrop: the container was removed unstarted'));
      const error = await rejection(h.run({}));

      expect(error).toMatchObject({ code: 'HARDENING_IGNORED' });
      expect(h.backend.calls).toEqual(['describe', 'prepareImage', 'create volume vol-1', 'create container box-1', 'remove volume vol-1']);
      expect(h.backend.leftovers()).toEqual([]);
      expect(workspaceDirs(h.settings)).toEqual([]);
    });

    it('stops a sandbox whose runner says it is not hardened before any step, and keeps the record of why', async () => {
      const h = harness({ identity: { uid: 1000, capEff: '0000000000000000', seccomp: 0 } });
      const error = await rejection(h.run({}));

      expect(error).toMatchObject({ code: 'HARDENING_IGNORED' });
      expect((error as Error).message).toMatch(/runs as uid 1000, not 0/);
      expect(h.backend.runnerLog).not.toContain('start');
      expect(h.backend.calls).toContain('kill box-1');
      expect(h.backend.leftovers()).toEqual([]);
      // The sandbox was opened, so the task had started: its host dir is the record of what went wrong.
      const [dir = ''] = workspaceDirs(h.settings);
      expect(JSON.parse(readFileSync(path.join(h.settings.workspacesRoot, dir, '.asp', 'result.json'), 'utf8'))).toMatchObject({ status: 'error', exitCode: 3 });
    });
  });
});
