import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskResult } from '../../src/supervisor/run-task.js';
import { keyValues } from '../fixtures/hostile/privilege-probe.js';
import { inspectorTakeover, ioUringProbe, quickThenSlow, runnerReach, runnerStopper, testRewriterDaemon, zombieLeaderDaemon } from '../fixtures/hostile/runner-takeover.js';
import { docker, dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { AspError, exitCodeFor } from '../../src/core/asp-error.js';
import { limitsSchema } from '../../src/config/task-spec.js';
import { currentSupervisor, ownershipLabels } from '../../src/backend/ownership-labels.js';
import { containerSpec } from '../../src/docker/container-spec.js';
import { identityMismatch } from '../../src/backend/sandbox-policy.js';
import { dockerSandbox } from '../../src/docker/docker-backend.js';
import { runSession } from '../../src/supervisor/sandbox-session.js';
import { deadlineAfter, systemClock } from '../../src/core/clock.js';
import { feedSandbox } from '../../src/supervisor/workspace-feed.js';
import { packForSandbox } from '../../src/workspace/workspace-tar.js';
import type { SandboxTask } from '../../src/protocol/messages.js';
import { imageContext } from '../../src/docker/sandbox-image.js';
import { repoWith } from '../helpers/repos.js';
import { run } from '../helpers/run.js';

const facts = (result: TaskResult, file: string) => keyValues(readFileSync(path.join(result.workspacePath, '.asp', file), 'utf8'));
/** gVisor where the daemon has it (CI registers it: scripts/enable-gvisor.sh); plain runc always. */
const runtimes = dockerAvailable && (await docker.info()).runtimes.includes('runsc') ? ['runc', 'runsc'] : ['runc'];

/**
 * The verdict is the product: whatever a step does to the runner, a later step that fails stays failed, and the
 * task exits 1. Each fixture of test/fixtures/hostile/runner-takeover.ts was seen to forge or stall the verdict
 * against a runner of the step's own uid; these tests hold the line that privilege separation draws.
 */
describe.skipIf(!dockerAvailable).each(runtimes)('a step cannot forge the verdict (runtime %s)', (runtime) => {
  const settings = testSettings();
  const under = (task: ReturnType<typeof runnerReach>) => ({ ...task, ...(runtime === 'runc' ? {} : { runtime }) });

  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('SIGUSR1 opens no inspector: the takeover step is refused and the failing tests stay failed (exit 1)', async () => {
    const { result } = await run(settings, under(inspectorTakeover()));
    const seen = facts(result, 'takeover.txt');
    expect(seen.runner).toMatch(/^\d+$/); // it did find the runner...
    expect(seen.signal).toBe('refused: EPERM'); // ...but may not signal it
    expect(seen.inspector).toMatch(/^refused/);
    expect(seen.evaluate).toBeUndefined();
    expect(result.exitCode).toBe(1);
    expect(result.status).toBe('failed');
    expect(result.steps.map((step) => [step.name, step.status, step.exitCode])).toEqual([
      ['takeover', 'passed', 0],
      ['tests', 'failed', 1],
    ]);
  });

  it('reaches nothing of the runner: not its memory, environment, stdout pipe, signals, files, nor PID 1', async () => {
    const { result } = await run(settings, under(runnerReach()));
    const seen = facts(result, 'runner-reach.txt');
    expect(seen.runner).toMatch(/^\d+$/);
    const attempts = ['mem-write', 'mem-read', 'stdout-pipe', 'signal-usr1', 'signal-stop', 'signal-init', 'write-runner-file'];
    for (const name of attempts) expect(seen[name], name).toBe('refused');
    if (runtime === 'runc') {
      expect(seen.environ).toBe('refused');
      expect(seen.maps).toBe('refused');
    }
    // gVisor (release 20221219) lets any process read another's /proc/<pid>/environ and maps (SECURITY.md). The
    // runner's environment is the container's, every variable of which the step has too: nothing there is news to
    // it; its memory map is of no use without a way to write that memory, which stays refused.
    else expect(seen.environ === 'refused' || seen['environ-extra'] === '0', JSON.stringify(seen)).toBe(true);
    expect(result.warnings.join('\n')).not.toContain('forged through the runner pipe');
    expect(result.exitCode).toBe(1);
    expect(result.steps[1]).toMatchObject({ name: 'tests', status: 'failed', exitCode: 1 });
  });

  it.each(['STOP', 'KILL'] as const)('kill -%s of the runner is refused: the task runs on and the failing step fails it', async (signal) => {
    const { result, output } = await run(settings, under(runnerStopper(signal)));
    expect(output).not.toContain(`runner ${signal} sent`);
    expect(result.exitCode).toBe(1);
    expect(result.status).toBe('failed');
    expect(result.steps.map((step) => step.status)).toEqual(['passed', 'failed']);
  });

  it.each([
    ['a daemon left by one step is dead before the next starts: the grading step sees the test file untouched', testRewriterDaemon, 'rewritten by a daemon'],
    ['a daemon whose main thread exited (a "zombie" with a live thread) is found and killed all the same', zombieLeaderDaemon, 'rewritten by a thread'],
  ] as const)('%s', async (_name, fixture, rewrite) => {
    const { result, output } = await run(settings, under(fixture()));
    expect(output).toContain('[agent] daemon started');
    expect(output).toContain('[grade] the real test');
    expect(output).not.toContain(rewrite);
    expect(result.exitCode).toBe(1);
    expect(result.steps.map((step) => [step.name, step.status])).toEqual([
      ['agent', 'passed'],
      ['grade', 'failed'],
    ]);
  });

  it('an honest step after a quick one runs to its end: ending the quick one kills nothing of the next', async () => {
    const { result, output } = await run(settings, under(quickThenSlow()));
    expect(output).toContain('[slow] slow step done');
    expect(result.exitCode).toBe(0);
    expect(result.steps.map((step) => [step.name, step.status, step.exitCode])).toEqual([
      ['quick', 'passed', 0],
      ['slow', 'passed', 0],
    ]);
  });

  it("io_uring_setup is refused by asp's seccomp profile", async () => {
    const { result } = await run(settings, under(ioUringProbe()));
    expect(result.exitCode).toBe(0);
    expect(facts(result, 'io-uring.txt').io_uring_setup).toMatch(/^refused: (Function not implemented|Operation not permitted)/);
  });
});

describe.skipIf(!dockerAvailable)('a task text of any size reaches the steps', () => {
  const settings = testSettings();

  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it("200 KiB of task (over the kernel's 128 KiB per variable) arrives whole in $ASP_TASK_FILE, and cut with a marker in $ASP_TASK", async () => {
    const task = `${'fix the bug, and say so in the changelog. '.repeat(5000)}THE END`; // about 215 000 bytes
    const probe =
      'printf "file=%s\\nenv=%s\\n" "$(wc -c < "$ASP_TASK_FILE")" "$(printf %s "$ASP_TASK" | wc -c)" > "$ASP_ARTIFACTS/task-size.txt"; tail -c 7 "$ASP_TASK_FILE"; echo; printf %s "$ASP_TASK" | tail -c 80';
    const { result, output } = await run(settings, { repo: repoWith({ 'a.txt': 'a\n' }), task, steps: [{ name: 'read', run: probe }] });
    expect(result.exitCode).toBe(0);
    const sizes = facts(result, 'task-size.txt');
    expect(Number(sizes.file)).toBe(Buffer.byteLength(task));
    expect(Number(sizes.env)).toBeLessThanOrEqual(64 * 1024);
    expect(output).toContain('[read] THE END');
    expect(output).toContain('all of it is in $ASP_TASK_FILE]');
  });
});

describe.skipIf(!dockerAvailable)('a sandbox whose runner is not hardened as asked gets no task', () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it("stops with HARDENING_IGNORED (exit 3) before any step when the runner's own kernel reports other capabilities", async () => {
    const name = `asp-identity-${process.pid}-${Date.now()}`;
    const labels = ownershipLabels({ taskId: 'identity', runId: name, supervisor: currentSupervisor(), expiresAt: new Date(Date.now() + 600_000), keep: false });
    const image = imageContext().tag;
    await docker.createVolume(name, labels);
    // What an engine that ignored CapAdd would make: the same spec, the runner without its four capabilities.
    const spec = containerSpec({ name, image, volume: name, labels, limits: limitsSchema.parse({}), allowedEnv: {} });
    const id = await docker.createContainer({ ...spec, HostConfig: { ...spec.HostConfig, CapAdd: [] } });
    const seen: string[] = [];
    const steps = [{ name: 'untrusted', run: 'echo ran', timeoutMs: 30_000 }];
    const task: SandboxTask = {
      taskId: 'identity',
      task: '',
      steps,
      deadlineAt: Date.now() + 60_000,
      outputCapBytes: 1024,
      diskLimitBytes: 1024 ** 3,
      baseCommit: '0'.repeat(40),
      branch: 'asp/identity',
      secretEnv: [],
    };
    const empty = mkdtempSync(path.join(os.tmpdir(), 'asp-identity-'));
    try {
      const ended = runSession(
        dockerSandbox(docker, id),
        { steps, taskTimeoutMs: 60_000, deadline: deadlineAfter(systemClock, 60_000), feed: (stdin) => feedSandbox(stdin, task, packForSandbox(empty, [])), verifyIdentity: identityMismatch },
        { onMessage: (message) => void seen.push(message.type), onWarning: () => {}, onRunnerStderr: () => {} },
      );
      const error = await ended.then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(AspError);
      expect((error as AspError).code).toBe('HARDENING_IGNORED');
      expect(exitCodeFor((error as AspError).code)).toBe(3);
      expect((error as AspError).message).toContain('holds capabilities 0000000000000000, not 00000000000000e4');
      // The task and the workspace went in, but no `start`: the untrusted step never ran.
      expect(seen).toContain('hello');
      expect(seen).not.toContain('step.start');
    } finally {
      await docker.removeContainer(id);
      await docker.removeVolume(name);
    }
  });
});

describe('the runner opens no debugger, whoever signals it', () => {
  it('keeps running and listens on no inspector port after SIGUSR1 (as root could send it)', async () => {
    const runner = spawn(process.execPath, [path.resolve(import.meta.dirname, '..', '..', 'dist', 'image', 'asp-sandbox.cjs')], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      let stdout = '';
      runner.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      await new Promise<void>((resolve) => runner.stdout.once('data', () => resolve()));
      expect(stdout).toContain('"type":"hello"');
      // Control: a plain Node process does open its inspector on SIGUSR1, so the refusal below means something.
      const plain = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 5000)'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let plainErr = '';
      plain.stderr.on('data', (chunk: Buffer) => (plainErr += chunk.toString('utf8')));
      await new Promise((resolve) => setTimeout(resolve, 300));
      plain.kill('SIGUSR1');
      await new Promise((resolve) => setTimeout(resolve, 500));
      plain.kill('SIGKILL');
      expect(plainErr).toContain('Debugger listening');

      runner.kill('SIGUSR1');
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(runner.exitCode).toBeNull();
      const reached = await new Promise<string>((resolve) => {
        const socket = net.connect(9229, '127.0.0.1', () => resolve('connected'));
        socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      });
      expect(reached).toBe('ECONNREFUSED');
    } finally {
      runner.kill('SIGKILL');
    }
  });
});
