import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ASP_STEP_ENV } from '../fixtures/sandbox-probe.js';
import { afterAll, describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import type { TaskResult } from '../../src/supervisor/run-task.js';
import { docker, dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { helloRepo, repoWith } from '../helpers/repos.js';
import { artifact, run, trace, workspaceDirs } from '../helpers/run.js';

describe.skipIf(!dockerAvailable)('asp run against the real Docker engine', () => {
  const settings = testSettings();

  afterAll(async () => {
    // The leak check: nothing asp created may outlive the suite.
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('runs the demo pipeline, copies the seed artifacts out and removes everything else', async () => {
    const { result, output } = await run(settings, { repo: helloRepo(), task: 'demo' });
    expect(result.status).toBe('passed');
    expect(result.exitCode).toBe(0);
    expect(result.steps.map((step) => [step.name, step.status])).toEqual([
      ['plan', 'passed'],
      ['design', 'passed'],
      ['test', 'passed'],
      ['review', 'passed'],
    ]);
    for (const name of ['planning.json', 'design.json', 'test_results.json', 'code_review.json', 'plan.json', 'test.json', 'events.jsonl', 'trace.json']) {
      expect(result.artifacts).toContain(name);
    }
    expect(artifact(result, 'test_results.json')).toMatchObject({ passed: 3, failed: 0, total: 3 });
    expect(artifact(result, 'test.json')).toMatchObject({ name: 'test', command: 'node tools/run-tests.js', exitCode: 0 });
    expect(output).toContain('[test] 3/3 tests passed');
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(false);
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });

    const document = trace(result);
    expect(document.schema).toBe('asp.trace/v1');
    expect(document.trace.name).toBe(result.taskId);
    expect(Object.keys(document.trace.metadata)).toEqual(expect.arrayContaining(['task_id', 'target_repo', 'target_branch', 'workspace_path', 'pr_url', 'hitl_required', 'hitl_status']));
    expect(document.trace.metadata.target_branch).toBe('main');
    const stepSpans = document.observations.filter((observation) => observation.metadata.kind === 'step');
    // The pipeline's four steps, then its clean-room check's one, in a second sandbox.
    expect(stepSpans.map((span) => span.name)).toEqual(['plan', 'design', 'test', 'review', 'check:tests']);
    expect(result.check).toMatchObject({ status: 'passed', steps: [{ name: 'tests', status: 'passed', exitCode: 0 }] });
    expect(stepSpans.every((span) => span.level === 'DEFAULT' && span.endTime !== null)).toBe(true);
    const phases = document.observations.filter((observation) => observation.metadata.kind === 'host').map((span) => span.name);
    expect(phases).toEqual(expect.arrayContaining(['host:clone', 'host:volume-fill', 'host:copy-out', 'host:cleanup']));
  });

  it('stops at a failing step: exit 1, later steps skipped', async () => {
    const repo = repoWith({ 'README.md': 'x\n' });
    const { result } = await run(settings, {
      repo,
      steps: [
        { name: 'first', run: 'echo fine' },
        { name: 'broken', run: 'echo "about to fail" >&2; exit 3' },
        { name: 'never', run: 'touch /workspace/.asp/never-ran' },
      ],
    });
    expect(result.status).toBe('failed');
    expect(result.exitCode).toBe(1);
    expect(result.steps).toEqual([
      expect.objectContaining({ name: 'first', status: 'passed', exitCode: 0 }),
      expect.objectContaining({ name: 'broken', status: 'failed', exitCode: 3 }),
      { name: 'never', status: 'skipped', exitCode: null, durationMs: null },
    ]);
    expect(artifact(result, 'broken.json')).toMatchObject({ exitCode: 3, outputTail: 'about to fail\n' });
    expect(result.artifacts).not.toContain('never.json');
    expect(result.artifacts).not.toContain('never-ran');
    const span = trace(result).observations.find((observation) => observation.name === 'broken');
    expect(span).toMatchObject({ level: 'ERROR', statusMessage: 'exit code 3' });
  });

  it('kills the container when a step passes its deadline: exit 124, nothing left', async () => {
    const started = Date.now();
    const { result } = await run(settings, {
      repo: repoWith({ 'README.md': 'x\n' }),
      steps: [
        { name: 'slow', run: 'echo started; sleep 60', timeout: '2s' },
        { name: 'after', run: 'true' },
      ],
    });
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(result.status).toBe('timeout');
    expect(result.exitCode).toBe(124);
    expect(result.steps.map((step) => step.status)).toEqual(['timeout', 'skipped']);
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    expect(trace(result).observations.find((observation) => observation.name === 'slow')?.level).toBe('ERROR');
    // The container was killed under the step, before the runner could write its record: asp writes it, from the protocol.
    const slow = artifact<{ durationMs: number }>(result, 'slow.json');
    expect(slow).toMatchObject({
      name: 'slow',
      command: 'echo started; sleep 60',
      exitCode: 124,
      timedOut: true,
      reason: 'step "slow" passed its 2000 ms deadline',
      outputTail: 'started\n',
      writtenBy: 'host',
    });
    expect(slow.durationMs).toBeGreaterThanOrEqual(1900);
    expect(slow.durationMs).toBeLessThan(30_000);
    expect(result.steps[0]?.durationMs).toBe(slow.durationMs);
    expect(result.artifacts).not.toContain('after.json');
  });

  it('ends the whole task at its deadline', async () => {
    const { result } = await run(settings, {
      repo: repoWith({ 'README.md': 'x\n' }),
      steps: [{ name: 'forever', run: 'sleep 60' }],
      limits: { timeout: '3s' },
    });
    expect(result.exitCode).toBe(124);
    expect(result.error).toContain('the task passed its 3000 ms deadline');
    expect(artifact(result, 'forever.json')).toMatchObject({ exitCode: 124, timedOut: true, reason: 'the task passed its 3000 ms deadline', writtenBy: 'host' });
    expect(result.steps[0]?.durationMs).toBeGreaterThan(0);
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('is hardened as seen from inside the container', async () => {
    const probe = [
      'set -u',
      'out=$ASP_ARTIFACTS/hardening.txt',
      'echo "uid=$(id -u) gid=$(id -g)" >> $out',
      'grep -E "^(CapEff|CapPrm|NoNewPrivs)" /proc/self/status | tr -s "\\t " "=" >> $out',
      'echo "netdevs=$(ls /sys/class/net | tr "\\n" ",")" >> $out',
      '(touch /rootfs-write 2>/dev/null && echo rootfs=writable || echo rootfs=readonly) >> $out',
      '(touch /tmp/x && chmod +x /tmp/x && echo tmp=writable) >> $out',
      '(test -e /var/run/docker.sock && echo socket=present || echo socket=absent) >> $out',
      'echo "pids=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)" >> $out',
      // bash retries a failed fork; node reports EAGAIN, so it shows the limit biting.
      `node -e 'const { spawn } = require("child_process"); let failed = 0; const kids = []; for (let i = 0; i < 100; i++) { const kid = spawn("sleep", ["5"]); kid.on("error", () => failed++); kids.push(kid); } setTimeout(() => { console.log("fork_failures_past_limit=" + (failed > 0 ? "yes" : "no")); kids.forEach((kid) => kid.kill()); }, 1000);' >> $out`,
      'echo "envnames=$(env | cut -d= -f1 | sort | tr "\\n" ",")" >> $out',
    ].join('\n');
    const { result } = await run(settings, {
      repo: repoWith({ 'probe.sh': probe }),
      steps: [{ name: 'probe', run: 'bash probe.sh' }],
      limits: { pids: 64 },
    });
    expect(result.exitCode).toBe(0);
    const facts = Object.fromEntries(
      readFileSync(path.join(result.workspacePath, '.asp', 'hardening.txt'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split('=').map((part) => part.replace(/:$/, '')) as [string, string]),
    );
    expect(facts.uid).toBe('1000 gid');
    expect(facts.CapEff).toBe('0000000000000000');
    expect(facts.CapPrm).toBe('0000000000000000');
    expect(facts.NoNewPrivs).toBe('1');
    expect(facts.netdevs).toBe('lo,');
    expect(facts.rootfs).toBe('readonly');
    expect(facts.tmp).toBe('writable');
    expect(facts.socket).toBe('absent');
    expect(facts.pids).toBe('64');
    expect(facts.fork_failures_past_limit).toBe('yes');
    // Exactly what asp, the image and the shell set: nothing of the host's environment.
    // asp's own for every step, then what the shell and the image add (bash: PWD, SHLVL, _; Docker: HOSTNAME).
    expect(facts.envnames?.split(',').filter(Boolean).sort()).toEqual([...ASP_STEP_ENV, 'HOSTNAME', 'PWD', 'SHELL', 'SHLVL', '_'].sort());
    expect(facts.envnames).not.toMatch(/LANGFUSE|DOCKER|AWS|GITHUB|SSH_AUTH/);
  });

  it('copies out only plain files: links and forged host files stay inside', async () => {
    const { result } = await run(settings, {
      repo: repoWith({ 'README.md': 'x\n' }),
      steps: [
        {
          name: 'hostile',
          run: 'ln -s /etc/passwd $ASP_ARTIFACTS/passwd; echo forged > $ASP_ARTIFACTS/trace.json; mkfifo $ASP_ARTIFACTS/pipe; echo fine > $ASP_ARTIFACTS/ok.txt',
        },
      ],
    });
    expect(result.exitCode).toBe(0);
    const asp = path.join(result.workspacePath, '.asp');
    expect(existsSync(path.join(asp, 'passwd'))).toBe(false);
    expect(existsSync(path.join(asp, 'pipe'))).toBe(false);
    expect(readFileSync(path.join(asp, 'ok.txt'), 'utf8')).toBe('fine\n');
    expect(trace(result).schema).toBe('asp.trace/v1');
    expect(result.warnings.join('\n')).toMatch(/passwd \(symlink entries are not allowed\)/);
    // The forged trace.json came out as data, was reported, and was replaced by asp's copy (the master is in .asp-host/).
    expect(result.warnings.join('\n')).toContain(".asp/trace.json came out of the sandbox under the name of one of asp's own files: replaced by asp's copy");
    expect(readFileSync(path.join(asp, 'trace.json'), 'utf8')).toBe(readFileSync(path.join(result.workspacePath, '.asp-host', 'trace.json'), 'utf8'));
    expect(lstatSync(asp).isDirectory()).toBe(true);
  });

  it('streams small artifacts back on stdout and copies big ones out of the stopped container', async () => {
    const repo = repoWith({ 'README.md': 'x\n' });
    const events = (result: TaskResult) =>
      readFileSync(path.join(result.workspacePath, '.asp', 'events.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);

    const small = (await run(settings, { repo, steps: [{ name: 'small', run: 'echo hi > $ASP_ARTIFACTS/small.txt' }] })).result;
    expect(small.exitCode).toBe(0);
    expect(readFileSync(path.join(small.workspacePath, '.asp', 'small.txt'), 'utf8')).toBe('hi\n');
    expect(events(small).filter((event) => event.type === 'artifacts.end')).toHaveLength(1);
    expect(events(small).some((event) => event.type === 'artifacts.chunk')).toBe(false); // data, not events

    // Past the stream limit (16 MiB) the runner sends no stream: the host takes .asp/ from the stopped container.
    const big = (await run(settings, { repo, steps: [{ name: 'big', run: 'head -c 20000000 /dev/urandom > $ASP_ARTIFACTS/big.bin' }] })).result;
    expect(big.exitCode).toBe(0);
    expect(events(big).some((event) => event.type === 'artifacts.end')).toBe(false);
    const announced = events(big).find((event) => event.type === 'artifact' && event.path === 'big.bin');
    const copied = readFileSync(path.join(big.workspacePath, '.asp', 'big.bin'));
    expect(copied.length).toBe(20_000_000);
    expect(createHash('sha256').update(copied).digest('hex')).toBe(announced?.sha256);
    expect(big.warnings).toEqual([]);
  });

  it('ends as an infrastructure error (exit 3) when the sandbox stops before running any step', async () => {
    // An image whose runner cannot unpack the workspace: the asp image without tar.
    const base = (await run(settings, { repo: repoWith({ 'README.md': 'x\n' }), steps: [{ name: 'probe', run: 'true' }] })).result.image as string;
    const broken = `asp-test-no-tar:${process.pid}`;
    execFileSync('docker', ['build', '-q', '-t', broken, '-'], { input: `FROM ${base}\nUSER root\nRUN rm -f /bin/tar /usr/bin/tar\nUSER 1000:1000\n`, stdio: ['pipe', 'ignore', 'pipe'] });
    try {
      const { result } = await run(settings, { repo: repoWith({ 'README.md': 'x\n' }), image: broken, steps: [{ name: 'never', run: 'touch /workspace/.asp/ran' }] });
      expect(result.status).toBe('error');
      expect(result.exitCode).toBe(3);
      expect(result.error).toMatch(/^the sandbox stopped \(exit 70\) before running any step$/);
      expect(result.warnings.join('\n')).toContain('cannot start tar to unpack the workspace');
      expect(result.warnings).toContain('the sandbox has no .asp/ to copy out');
      expect(result.steps).toEqual([{ name: 'never', status: 'skipped', exitCode: null, durationMs: null }]);
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    } finally {
      execFileSync('docker', ['rmi', '-f', broken], { stdio: 'ignore' });
    }
  });

  it('caps step output and says how much it dropped', async () => {
    const { result, output } = await run(settings, {
      repo: repoWith({ 'README.md': 'x\n' }),
      steps: [{ name: 'chatty', run: 'head -c 3000000 /dev/zero | tr "\\0" "a"; echo; echo done' }],
      outputCap: '1m',
    });
    expect(result.exitCode).toBe(0);
    const record = artifact<{ outputBytes: number; droppedBytes: number }>(result, 'chatty.json');
    expect(record.outputBytes).toBe(3_000_006);
    expect(record.droppedBytes).toBe(3_000_006 - 1024 ** 2);
    expect(output.length).toBeLessThan(1024 ** 2 + 1000);
    expect(output).toContain('[asp: output passed');
  });

  it('says output was dropped also when the cap falls exactly between two writes', async () => {
    // 1024 bytes fill the cap exactly in one write; what comes after a pause is a write of its own, all dropped.
    const { result, output } = await run(settings, {
      repo: repoWith({ 'README.md': 'x\n' }),
      steps: [{ name: 'exact', run: 'head -c 1024 /dev/zero | tr "\\0" "a"; sleep 0.5; echo more' }],
      outputCap: '1k',
    });
    expect(result.exitCode).toBe(0);
    expect(artifact<{ droppedBytes: number }>(result, 'exact.json').droppedBytes).toBe(5);
    expect(output).toContain('[asp: output passed 1024 bytes; the rest is not shown]');
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'events.jsonl'), 'utf8')).toContain('passed 1024 bytes; the rest is dropped');
  });

  it('keeps container, volume and clone with keep, and they are labelled', async () => {
    const { result } = await run(settings, { repo: repoWith({ 'README.md': 'x\n' }), steps: [{ name: 'one', run: 'true' }], keep: true });
    try {
      expect(existsSync(path.join(result.workspacePath, 'repo', 'README.md'))).toBe(true);
      const kept = await leftovers();
      expect(kept.volumes).toEqual([`asp-ws-${result.taskId}-${result.runId}`]);
      expect(kept.containers).toEqual([`asp-${result.taskId}-${result.runId}`]);
      const [container] = await docker.listContainers([`asp.task=${result.taskId}`]);
      expect(container?.labels).toMatchObject({ 'asp.managed': 'true', 'asp.run': result.runId, 'asp.keep': 'true' });
    } finally {
      const containers = await docker.listContainers([`asp.task=${result.taskId}`]);
      for (const container of containers) await docker.removeContainer(container.id);
      await docker.removeVolume(`asp-ws-${result.taskId}-${result.runId}`);
    }
  });

  it('stops, copies out and cleans up when interrupted', async () => {
    const controller = new AbortController();
    const pending = run(settings, { repo: repoWith({ 'README.md': 'x\n' }), steps: [{ name: 'wait', run: 'echo partial > $ASP_ARTIFACTS/partial.txt; sleep 60' }] }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 2500);
    const { result } = await pending;
    expect(result.exitCode).toBe(130);
    expect(result.status).toBe('interrupted');
    expect(trace(result).trace.metadata.exit_status).toBe('interrupted');
    expect(result.artifacts).toContain('partial.txt');
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  describe('bad input leaves nothing behind', () => {
    const clean = testSettings();

    async function expectFailure(input: Parameters<typeof run>[1], code: AspError['code'], message: string) {
      const error = await run(clean, input).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(AspError);
      expect((error as AspError).code).toBe(code);
      expect((error as AspError).message).toContain(message);
      expect(workspaceDirs(clean)).toEqual([]);
      expect(await leftovers()).toEqual({ containers: [], volumes: [] });
    }

    it('an unknown ref', () => expectFailure({ repo: helloRepo(), ref: 'no-such-branch' }, 'REPO_NOT_FOUND', 'ref "no-such-branch" not found'));
    it('a missing repository', () => expectFailure({ repo: '/nonexistent/repo' }, 'REPO_NOT_FOUND', 'no such directory'));
    it('a missing second repository of a multi-repo task', () => expectFailure({ repo: helloRepo(), repos: [{ name: 'web', repo: '/nonexistent/web' }] }, 'REPO_NOT_FOUND', 'no such directory'));
    it('a directory that is not a git repository', () => expectFailure({ repo: path.dirname(helloRepo()), steps: [{ name: 'a', run: 'true' }] }, 'REPO_NOT_FOUND', 'cannot clone'));
    it('a bad asp.pipeline.json in the repository', () =>
      expectFailure({ repo: repoWith({ 'asp.pipeline.json': '{"steps":[{"name":"a b","run":"x"}]}' }) }, 'BAD_INPUT', 'steps.0.name must be letters'));
    it('a repository without steps', () => expectFailure({ repo: repoWith({ 'README.md': 'x' }) }, 'BAD_INPUT', 'no steps to run'));
    it('an image that is not there', () => expectFailure({ repo: helloRepo(), image: 'asp-no-such-image:latest' }, 'IMAGE_UNAVAILABLE', 'asp-no-such-image:latest is not present'));
    it('an unknown container runtime', () => expectFailure({ repo: helloRepo(), runtime: 'runsc-not-installed' }, 'RUNTIME_UNAVAILABLE', 'runsc-not-installed'));
  });
});
