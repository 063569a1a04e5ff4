import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { imageContext } from '../../src/docker/sandbox-image.js';
import { asp, type CliRun } from '../helpers/cli.js';
import { dockerAvailable } from '../helpers/docker.js';
import { freePort } from '../helpers/ports.js';
import { repoWith } from '../helpers/repos.js';
import { succeeds } from '../helpers/server-process.js';
import { canRunSecondDaemon, startSecondDaemon, type SecondDaemon } from '../helpers/second-daemon.js';

const cli = path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'asp.cjs');

/** Starts `asp` with `args`, sends `signals` (one per `gapMs`) once `afterMs` passed, and says how it ended and when. */
function interrupted(
  args: string[],
  env: Record<string, string>,
  options: { afterMs: number; signals: NodeJS.Signals[]; gapMs?: number },
): Promise<{ code: number | null; stderr: string; msAfterFirstSignal: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let first = 0;
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    setTimeout(() => {
      first = Date.now();
      options.signals.forEach((signal, index) => setTimeout(() => child.kill(signal), index * (options.gapMs ?? 300)));
    }, options.afterMs);
    child.on('close', (code) => resolve({ code, stderr, msAfterFirstSignal: Date.now() - first }));
  });
}

/**
 * Issue 21: faults of the engine itself. A daemon that accepts connections and never answers must not hold an
 * interrupted run (SIGINT/SIGTERM) beyond its bound; a daemon killed under a running task ends that task as
 * infrastructure, with what it had so far kept.
 */
describe.skipIf(!dockerAvailable)('faults of the container engine', () => {
  describe('a daemon that accepts and never answers', () => {
    let silent: net.Server;
    let host: string;
    const home = mkdtempSync(path.join(os.tmpdir(), 'asp-faults-'));
    beforeAll(async () => {
      const port = await freePort();
      silent = net.createServer((socket) => socket.on('error', () => {}));
      await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
      host = `tcp://127.0.0.1:${port}`;
    });
    afterAll(() => {
      silent.close();
    });
    const env = () => ({ DOCKER_HOST: host, ASP_HOME: home, ASP_WORKSPACES: path.join(home, 'workspaces'), ASP_INTERRUPT_GRACE: '3s' });

    it.each<NodeJS.Signals>(['SIGTERM', 'SIGINT'])(
      'asp run: one %s ends the run (exit 130) within its grace, saying why in one line',
      async (signal) => {
        const ended = await interrupted(['run', '--repo', repoWith({ 'README.md': 'x\n' }), '--step', 't=true'], env(), { afterMs: 1500, signals: [signal] });
        expect(ended.code).toBe(130);
        // 3 s of grace, and some room for a loaded machine: far from the 30 s the daemon's own timeout would take.
        expect(ended.msAfterFirstSignal).toBeLessThan(15_000);
        expect(ended.stderr).toContain(`the clean-up did not finish within 3 s of ${signal} (is the container engine answering?); exiting now (exit 130)`);
      },
      60_000,
    );

    it('a second signal cuts the grace short', async () => {
      const ended = await interrupted(
        ['run', '--repo', repoWith({ 'README.md': 'x\n' }), '--step', 't=true'],
        { ...env(), ASP_INTERRUPT_GRACE: '60s' },
        { afterMs: 1500, signals: ['SIGINT', 'SIGINT'] },
      );
      expect(ended.code).toBe(130);
      expect(ended.msAfterFirstSignal).toBeLessThan(15_000);
      expect(ended.stderr).toContain('the removal did not finish within 5 s of the second SIGINT');
    }, 60_000);

    it('asp batch too: SIGTERM ends it within its grace', async () => {
      const list = path.join(home, 'tasks.jsonl');
      writeFileSync(list, JSON.stringify({ repo: repoWith({ 'README.md': 'x\n' }), steps: [{ name: 't', run: 'true' }] }) + '\n');
      const ended = await interrupted(['batch', list], env(), { afterMs: 1500, signals: ['SIGTERM'] });
      expect(ended.code).toBe(130);
      expect(ended.msAfterFirstSignal).toBeLessThan(15_000);
      expect(ended.stderr).toContain('the clean-up did not finish within 3 s of SIGTERM');
    }, 60_000);
  });

  let shared: SecondDaemon | undefined;
  const secondDaemon = (): SecondDaemon => {
    if (!shared) throw new Error('the second daemon is not up');
    return shared;
  };
  describe.skipIf(!canRunSecondDaemon)('a daemon SIGKILLed while a task runs (a dockerd of its own)', () => {
    let daemon: SecondDaemon;
    beforeAll(async () => {
      daemon = shared = await startSecondDaemon();
      daemon.load([imageContext().tag]);
    }, 300_000);
    // A test that killed the daemon leaves it down: the next one starts it again.
    beforeEach(async () => {
      if (!(await succeeds(() => daemon.docker.ping()))) await daemon.restart();
    }, 90_000);
    afterAll(async () => {
      // The killed daemon's container ends at its task's deadline (the runner's backstop); stop() waits for that.
      await daemon.stop();
      expect(daemon.leftoverProcesses()).toEqual([]);
    }, 120_000);

    it('ends the task as infrastructure (exit 3), with its events and its trace kept, and does not hang', async () => {
      const home = mkdtempSync(path.join(os.tmpdir(), 'asp-faults-kill-'));
      const workspaces = path.join(home, 'workspaces');
      const running = asp(['run', '--repo', repoWith({ 'README.md': 'x\n' }), '--id', 'killed-daemon', '--timeout', '8s', '--step', 'slow=echo started; sleep 6', '--json'], {
        ...daemon.env,
        ASP_HOME: home,
        ASP_WORKSPACES: workspaces,
      });
      // Once the step runs (its first line is in events.jsonl), the daemon dies.
      const events = path.join(workspaces, 'killed-daemon', '.asp-host', 'events.jsonl');
      const until = Date.now() + 60_000;
      while (!(existsSync(events) && readFileSync(events, 'utf8').includes('"step.start"')) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100));
      const killedAt = Date.now();
      await daemon.crash();
      const ran = await running;
      expect(Date.now() - killedAt).toBeLessThan(30_000);
      expect(ran.code, ran.stderr).toBe(3);
      expect(JSON.parse(ran.stdout)).toMatchObject({ status: 'error', exitCode: 3, error: { code: 'DOCKER_UNAVAILABLE', message: expect.stringContaining('closed the connection') } });
      // What the run had is kept: the step's record (written by the host), the events, the trace of an errored task.
      const artifacts = path.join(workspaces, 'killed-daemon', '.asp');
      const trace = JSON.parse(readFileSync(path.join(artifacts, 'trace.json'), 'utf8')) as { trace: { metadata: { exit_status: string } } };
      expect(trace.trace.metadata.exit_status).toBe('error');
      expect(readFileSync(path.join(artifacts, 'events.jsonl'), 'utf8')).toContain('"step.start"');
      expect(existsSync(path.join(artifacts, 'slow.json'))).toBe(true);
      // Its container and volume could not be removed on a dead daemon: said so, for asp reap to finish.
      expect(ran.stderr).toContain('cleanup incomplete: cannot remove the container');
    }, 120_000);

    it.each([
      { how: 'SIGKILLed', down: () => daemon.crash() },
      { how: 'stopped cleanly (SIGTERM, live-restore off)', down: () => daemon.terminate() },
    ])(
      'mid-batch, a daemon $how and restarted: the tasks it took are retried once it is back, each accounted for once, nothing left',
      async ({ down }) => {
        const run = batchHome('restart');
        const ran = asp(['batch', run.list(4, 'echo started; sleep 4'), '--concurrency', '2', '--engine-wait', '90s', '--report', run.report, '--json'], run.env);
        await run.stepsStarted(['t1', 't2'], ran);
        await down();
        await sleep(4000);
        await daemon.restart();
        const done = await ran;
        expect(done.code, done.stderr).toBe(0);
        expect(done.stderr).toContain('the container engine does not answer');
        expect(done.stderr).toContain('the container engine answers again after');
        run.expectAccountedOnce(['t1', 't2', 't3', 't4']);
        // The two tasks the daemon took were retried; what its restart brought back of them was removed by the batch.
        const report = run.readReport();
        expect(report.tasks.filter((task) => task.attempts > 1).map((task) => task.key)).toEqual(['t1', 't2']);
        expect(leftovers(daemon)).toEqual({ containers: '', volumes: '' });
      },
      240_000,
    );

    it('a daemon gone past --engine-wait stops the batch (exit 3, the rest not run); --resume finishes it once it is back', async () => {
      const run = batchHome('gone');
      const ran = asp(['batch', run.list(3, 'echo started; sleep 4'), '--concurrency', '1', '--engine-wait', '3s', '--report', run.report], run.env);
      await run.stepsStarted(['t1'], ran);
      await daemon.crash();
      const stoppedBatch = await ran;
      expect(stoppedBatch.code, stoppedBatch.stderr).toBe(3);
      expect(stoppedBatch.stderr).toMatch(/the container engine has not answered for \d/);
      expect(stoppedBatch.stderr).toContain('stopped early; continue with: asp batch');
      expect(stoppedBatch.stderr).toContain('--resume');
      const first = run.readReport();
      expect(first.stopped).toMatch(/^the container engine has not answered/);
      expect(first.tasks.map((task) => [task.key, task.status])).toEqual([
        ['t1', 'error'],
        ['t2', 'not-run'],
        ['t3', 'not-run'],
      ]);
      await daemon.restart();
      const resumed = await asp(['batch', run.listFile, '--resume', '--report', run.report], run.env);
      expect(resumed.code, resumed.stderr).toBe(0);
      run.expectAccountedOnce(['t1', 't2', 't3']);
      expect(run.readReport().stopped).toBeNull();
      // The first batch's process is gone: the resumed batch's sweep took what the dead daemon left of t1.
      expect(leftovers(daemon)).toEqual({ containers: '', volumes: '' });
    }, 240_000);
  });

  describe.skipIf(!canRunSecondDaemon)('a daemon with live-restore, stopped cleanly under a batch (a dockerd of its own)', () => {
    let daemon: SecondDaemon;
    beforeAll(async () => {
      daemon = await startSecondDaemon({ liveRestore: true });
      daemon.load([imageContext().tag]);
    }, 300_000);
    afterAll(async () => {
      await daemon.stop();
      expect(daemon.leftoverProcesses()).toEqual([]);
    }, 120_000);

    it('the containers it kept running are retried past and removed; each task is accounted for once', async () => {
      const run = batchHome('live-restore', daemon);
      const ran = asp(['batch', run.list(2, 'echo started; sleep 4'), '--concurrency', '2', '--engine-wait', '90s', '--report', run.report], run.env);
      await run.stepsStarted(['t1', 't2'], ran);
      await daemon.terminate();
      // live-restore: the two containers ran on without their daemon.
      await sleep(3000);
      await daemon.restart();
      const done = await ran;
      expect(done.code, done.stderr).toBe(0);
      run.expectAccountedOnce(['t1', 't2']);
      expect(leftovers(daemon)).toEqual({ containers: '', volumes: '' });
    }, 240_000);
  });

  describe.skipIf(!canRunSecondDaemon)('a daemon whose disk fills (its data root on a tmpfs of its own)', () => {
    let daemon: SecondDaemon;
    const MiB = 1024 * 1024;
    beforeAll(async () => {
      daemon = await startSecondDaemon({ dataRootSize: '1300m' });
      daemon.load([imageContext().tag]);
    }, 300_000);
    afterEach(() => {
      daemon.unfill();
      // Whatever the disk did, the task left nothing on the daemon.
      expect(leftovers(daemon)).toEqual({ containers: '', volumes: '' });
    });
    afterAll(async () => {
      await daemon.stop();
      expect(daemon.leftoverProcesses()).toEqual([]);
    }, 120_000);
    const runOn = (args: string[]) => {
      const home = mkdtempSync(path.join(os.tmpdir(), 'asp-faults-disk-'));
      return asp(['run', ...args, '--json'], { ...daemon.env, ASP_HOME: home, ASP_WORKSPACES: path.join(home, 'workspaces') });
    };
    const result = (ran: CliRun) => JSON.parse(ran.stdout) as { status: string; exitCode: number; error?: { code: string; message: string } | string };
    const errorText = (ran: CliRun) => JSON.stringify(result(ran).error ?? '') + ran.stderr;

    it('during the workspace feed: infrastructure (exit 3) that names the engine’s disk; the next task on a freed disk passes', async () => {
      const repo = repoWith({ 'big.bin': randomBytes(48 * MiB), 'README.md': 'x\n' });
      daemon.fill(16 * MiB);
      const full = await runOn(['--repo', repo, '--step', 't=true']);
      expect(full.code, full.stderr).toBe(3);
      expect(errorText(full)).toMatch(/container engine's disk is full/);
      daemon.unfill();
      const freed = await runOn(['--repo', repo, '--step', 't=true']);
      expect(freed.code, freed.stderr).toBe(0);
    }, 180_000);

    it('during a step: the engine’s disk full is infrastructure (exit 3); a step past its own --disk limit is the task’s failure (exit 1)', async () => {
      const repo = repoWith({ 'README.md': 'x\n' });
      daemon.fill(32 * MiB);
      const full = await runOn(['--repo', repo, '--disk', '1g', '--step', 'fill=dd if=/dev/zero of=big bs=1M count=100']);
      expect(full.code, full.stderr).toBe(3);
      expect(result(full).status).toBe('error');
      expect(errorText(full)).toMatch(/container engine's disk is full/);
      daemon.unfill();
      const own = await runOn(['--repo', repo, '--disk', '20m', '--step', 'fill=dd if=/dev/zero of=big bs=1M count=100; sleep 5']);
      expect(own.code, own.stderr).toBe(1);
      expect(own.stderr + own.stdout).toContain('disk limit');
    }, 180_000);

    it('during copy-out: changes that do not fit the engine’s disk end the task as infrastructure (exit 3), not as passed', async () => {
      const repo = repoWith({ 'README.md': 'x\n' });
      daemon.fill(48 * MiB);
      const full = await runOn(['--repo', repo, '--disk', '1g', '--step', 'write=head -c 30000000 /dev/urandom > data.bin']);
      expect(full.code, full.stderr).toBe(3);
      expect(errorText(full)).toMatch(/container engine's disk is full/);
    }, 180_000);
  });

  /** A batch of its own against the second daemon: its list, report, homes, and what its journal must show. */
  function batchHome(name: string, target?: SecondDaemon) {
    const home = mkdtempSync(path.join(os.tmpdir(), `asp-faults-${name}-`));
    const workspaces = path.join(home, 'workspaces');
    const listFile = path.join(home, 'tasks.jsonl');
    const report = path.join(home, 'report.json');
    const daemonEnv = () => (target ?? secondDaemon()).env;
    return {
      listFile,
      report,
      get env() {
        return { ...daemonEnv(), ASP_HOME: home, ASP_WORKSPACES: workspaces };
      },
      list(count: number, run: string): string {
        const repo = repoWith({ 'README.md': 'x\n' });
        const lines = Array.from({ length: count }, (_, index) => JSON.stringify({ id: `t${index + 1}`, repo, limits: { timeout: '60s' }, steps: [{ name: 'slow', run }] }));
        writeFileSync(listFile, lines.join('\n') + '\n');
        return listFile;
      },
      /** Waits until the steps of `ids` run; a batch that ended first fails the test with what it said. */
      async stepsStarted(ids: string[], batch: Promise<CliRun>): Promise<void> {
        let ended: CliRun | undefined;
        void batch.then((result) => (ended = result));
        const started = (id: string) => {
          const events = path.join(workspaces, id, '.asp-host', 'events.jsonl');
          return existsSync(events) && readFileSync(events, 'utf8').includes('"step.start"');
        };
        const until = Date.now() + 90_000;
        while (!ids.every(started)) {
          if (ended) throw new Error(`the batch ended (exit ${ended.code}) before the steps of ${ids.join(', ')} ran:\n${ended.stderr}`);
          if (Date.now() > until) throw new Error(`steps of ${ids.join(', ')} did not start within 90 s`);
          await sleep(100);
        }
      },
      readReport: () => JSON.parse(readFileSync(report, 'utf8')) as { stopped?: string | null; tasks: Array<{ key: string; status: string; attempts: number }> },
      /** Every task passed, and the journal ends each exactly once for good (one final end record per key). */
      expectAccountedOnce(keys: string[]): void {
        const journals = path.join(home, 'batches');
        const [batchDir] = readdirSync(journals);
        const records = readFileSync(path.join(journals, batchDir ?? '', 'journal.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as { event: string; key: string; status?: string; attempt: number });
        const finals = records.filter((record) => record.event === 'end' && record.status && !['error', 'interrupted', 'not-run'].includes(record.status));
        expect(finals.map((record) => record.key).sort()).toEqual(keys);
        expect(finals.every((record) => record.status === 'passed')).toBe(true);
        // Every attempt that started ended, once.
        for (const key of keys) {
          const mine = records.filter((record) => record.key === key);
          expect(mine.filter((record) => record.event === 'start').length).toBe(mine.filter((record) => record.event === 'end').length);
        }
        const report = JSON.parse(readFileSync(path.join(home, 'report.json'), 'utf8')) as { tasks: Array<{ key: string; status: string }>; passed: number; total: number };
        expect(report.tasks.map((task) => task.key)).toEqual(keys);
        expect(report).toMatchObject({ passed: keys.length, total: keys.length });
      },
    };
  }
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** asp's containers and volumes on a daemon, as the docker CLI lists them (ids, one per line). */
function leftovers(daemon: SecondDaemon): { containers: string; volumes: string } {
  return { containers: daemon.cli(['ps', '-aq', '--filter', 'label=asp.managed']), volumes: daemon.cli(['volume', 'ls', '-q', '--filter', 'label=asp.managed']) };
}
