import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageContext } from '../../src/docker/sandbox-image.js';
import { asp } from '../helpers/cli.js';
import { dockerAvailable } from '../helpers/docker.js';
import { freePort } from '../helpers/ports.js';
import { repoWith } from '../helpers/repos.js';
import { canRunSecondDaemon, startSecondDaemon, type SecondDaemon } from '../helpers/second-daemon.js';

const cli = path.resolve(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'main.js');

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

  describe.skipIf(!canRunSecondDaemon)('a daemon SIGKILLed while a task runs (a dockerd of its own)', () => {
    let daemon: SecondDaemon;
    beforeAll(async () => {
      daemon = await startSecondDaemon();
      daemon.load([imageContext().tag]);
    }, 300_000);
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
  });
});
