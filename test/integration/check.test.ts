import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskResult } from '../../src/supervisor/run-task.js';
import { failingCheck, hiddenTests, leftoversForTheCheck } from '../fixtures/hostile/check-leftovers.js';
import { uniqueSeconds } from '../fixtures/hostile/hostile-task.js';
import { keyValues } from '../fixtures/hostile/privilege-probe.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { hostProcesses } from '../helpers/host-checks.js';
import { repoWith } from '../helpers/repos.js';
import { run, trace } from '../helpers/run.js';

const view = (result: TaskResult, file: string) => keyValues(readFileSync(path.join(result.workspacePath, '.asp', file), 'utf8'));

/**
 * The clean-room check: a fresh sandbox with the base commit and the steps' change, nothing else of the agent's
 * sandbox, the check dir read-only; its outcome is the verdict.
 */
describe.skipIf(!dockerAvailable)('a clean-room check decides the verdict', () => {
  const settings = testSettings();

  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('sees the committed change and nothing else the agent left: no /tmp marker, daemon, ignored or stray file', async () => {
    const seconds = uniqueSeconds();
    const hidden = hiddenTests();
    const { result, output } = await run(settings, { ...leftoversForTheCheck(seconds), checkDir: hidden });
    expect(output).toContain('[agent] agent done');
    expect(output).toContain('[check:view] hidden test passed');
    expect(result.status).toBe('passed');
    expect(result.exitCode).toBe(0);
    expect(result.change).toMatchObject({ commits: 1 });

    const seen = view(result, 'check/check-view.txt');
    expect(seen).toMatchObject({
      value: 'changed', // the change came through its bundle...
      marker: 'absent', // ...and nothing else did
      ignored: 'absent',
      stray: 'absent',
      'check-dir': '/workspace/check',
      hidden: '# hidden-test-secret',
      'check-dir-write': 'refused',
      'check-dir-create': 'refused',
      'check-dir-chmod': 'refused',
    });
    expect(seen.head).toMatch(/^asp: /); // the commit the agent's sandbox made, fetched and checked by the host
    expect(result.check).toMatchObject({ status: 'passed', exitCode: 0, commit: result.change?.head, steps: [{ name: 'view', status: 'passed', exitCode: 0 }] });

    // The hidden tests never reached the agent's sandbox.
    expect(view(result, 'agent-view.txt')).toEqual({ 'check-dir': 'absent', hidden: 'unseen' });
    // Both phases are in the one trace.
    const names = trace(result).observations.map((observation) => observation.name);
    expect(names).toEqual(expect.arrayContaining(['agent', 'check:view', 'host:check', 'host:check:run']));
    // The agent's daemon is in no container now (the check's is a new one, which could not see it anyway).
    expect(hostProcesses(`sleep ${seconds}`)).toEqual([]);
  });

  it('fails the task when the check fails although the steps passed, and takes probe_accuracy from the check', async () => {
    const { result, output } = await run(settings, failingCheck());
    expect(output).toContain('[agent] claims all tests pass');
    expect(output).toContain('[check:tests] 3 of 4 tests failed');
    expect(result.steps).toEqual([expect.objectContaining({ name: 'agent', status: 'passed', exitCode: 0 })]);
    expect(result.status).toBe('failed');
    expect(result.exitCode).toBe(1);
    expect(result.error).toBe('the clean-room check failed');
    expect(result.check).toMatchObject({ status: 'failed', exitCode: 1, steps: [{ name: 'tests', status: 'failed', exitCode: 1 }] });
    // The agent's own claim (9 of 9) is an artifact, not the score.
    const accuracy = trace(result).scores.find((score) => score.name === 'probe_accuracy');
    expect(accuracy?.value).toBe(0.25);
    expect(existsSync(path.join(result.workspacePath, '.asp', 'check', 'tests.json'))).toBe(true);
  });

  it('sees the change of every repository of a multi-repo task', async () => {
    const api = repoWith({ 'api.txt': 'old api\n' });
    const web = repoWith({ 'web.txt': 'old web\n' });
    const edits = 'echo "new api" > api.txt && echo "new web" > ../repos/web/web.txt';
    const look = 'test "$(cat api.txt)" = "new api" && test "$(cat ../repos/web/web.txt)" = "new web" && echo "both changes seen"';
    const { result, output } = await run(settings, { repo: api, repos: [{ name: 'web', repo: web }], steps: [{ name: 'edit', run: edits }], check: [{ name: 'look', run: look }] });
    expect(output).toContain('[check:look] both changes seen');
    expect(result.exitCode).toBe(0);
    expect(result.repos).toEqual([expect.objectContaining({ name: 'web', change: expect.objectContaining({ commits: 1 }) })]);
  });

  it('a check step killed at its deadline ends the task with 124 and still gets its record, written by the host', async () => {
    const { result } = await run(settings, { repo: repoWith({ 'a.txt': 'a\n' }), steps: [{ name: 'agent', run: 'true' }], check: [{ name: 'slow', run: 'echo "checking"; sleep 30', timeout: '2s' }] });
    expect(result.exitCode).toBe(124);
    expect(result.check).toMatchObject({ status: 'timeout', exitCode: 124, steps: [{ name: 'slow', status: 'timeout', exitCode: 124 }] });
    expect(result.check?.steps[0]?.durationMs).toBeGreaterThanOrEqual(1500);
    const record = JSON.parse(readFileSync(path.join(result.workspacePath, '.asp', 'check', 'slow.json'), 'utf8')) as Record<string, unknown>;
    expect(record).toMatchObject({ name: 'slow', writtenBy: 'host', timedOut: true, outputTail: 'checking\n' });
    expect(record.reason).toMatch(/deadline/);
  });

  it("is not run when the steps failed: the steps' failure is the verdict, and their own test results score nothing", async () => {
    const task = failingCheck();
    const claim = `echo '{"passed":9,"failed":0,"total":9}' > "$ASP_ARTIFACTS/test_results.json"; mkdir -p "$ASP_ARTIFACTS/check"; cp "$ASP_ARTIFACTS/test_results.json" "$ASP_ARTIFACTS/check/"; exit 3`;
    const { result } = await run(settings, { ...task, steps: [{ name: 'agent', run: claim }] });
    expect(result.exitCode).toBe(1);
    expect(result.check).toBeNull();
    expect(trace(result).observations.map((observation) => observation.name)).not.toContain('host:check');
    // Neither its .asp/test_results.json nor a .asp/check/ of its own making counts: 0 of 1 steps passed.
    const accuracy = trace(result).scores.find((score) => score.name === 'probe_accuracy');
    expect(accuracy?.value).toBe(0);
    expect(accuracy?.comment).toContain('the clean-room check did not run');
  });
});
