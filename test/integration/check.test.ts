import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskResult } from '../../src/supervisor/run-task.js';
import { failingCheck, hiddenTests, leftoversForTheCheck } from '../fixtures/hostile/check-leftovers.js';
import { uniqueSeconds } from '../fixtures/hostile/hostile-task.js';
import { keyValues } from '../fixtures/hostile/privilege-probe.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { hostProcesses } from '../helpers/host-checks.js';
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
      daemon: 'gone',
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

  it('is not run when the steps failed: the steps\' failure is the verdict', async () => {
    const task = failingCheck();
    const { result } = await run(settings, { ...task, steps: [{ name: 'agent', run: 'exit 3' }] });
    expect(result.exitCode).toBe(1);
    expect(result.check).toBeNull();
    expect(trace(result).observations.map((observation) => observation.name)).not.toContain('host:check');
  });
});
