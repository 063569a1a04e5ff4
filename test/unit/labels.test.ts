import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { currentSupervisor, formatSupervisor, LABEL, ownershipLabels, parseOwnership, parseSupervisor, processStartTicks, supervisorState } from '../../src/backend/ownership-labels.js';

const owner = {
  taskId: 'task-1',
  runId: 'run-1',
  supervisor: { host: 'box', pid: 42, startTicks: 12345 },
  expiresAt: new Date('2026-11-28T01:00:00Z'),
  keep: false,
};

describe('ownership labels', () => {
  it('states every fact of the contract', () => {
    expect(ownershipLabels(owner)).toEqual({
      'asp.managed': 'true',
      'asp.task': 'task-1',
      'asp.run': 'run-1',
      'asp.supervisor': 'box/42/12345',
      'asp.expires-at': '2026-11-28T01:00:00.000Z',
      'asp.keep': 'false',
    });
  });

  it('reads back what it wrote', () => {
    expect(parseOwnership(ownershipLabels(owner))).toEqual(owner);
  });

  it('disowns objects without asp.managed, or with damaged labels', () => {
    expect(parseOwnership({})).toBeUndefined();
    expect(parseOwnership({ ...ownershipLabels(owner), [LABEL.managed]: 'false' })).toBeUndefined();
    expect(parseOwnership({ ...ownershipLabels(owner), [LABEL.supervisor]: 'garbage' })).toBeUndefined();
    expect(parseOwnership({ ...ownershipLabels(owner), [LABEL.expiresAt]: 'not a date' })).toBeUndefined();
  });

  it('keeps host names with slashes intact', () => {
    const identity = { host: 'a/b', pid: 7, startTicks: 9 };
    expect(parseSupervisor(formatSupervisor(identity))).toEqual(identity);
  });
});

describe('supervisor liveness', () => {
  it('knows this process is alive', () => {
    expect(supervisorState(currentSupervisor())).toBe('alive');
  });

  it('reads a real start time for this process', () => {
    expect(processStartTicks(process.pid)).toBeGreaterThan(0);
  });

  it('calls a pid that no longer exists dead', () => {
    expect(supervisorState({ host: os.hostname(), pid: 2 ** 22 + 1, startTicks: 1 })).toBe('dead');
  });

  it('does not mistake a reused pid for the original process', () => {
    const me = currentSupervisor();
    expect(supervisorState({ ...me, startTicks: me.startTicks + 1 })).toBe('dead');
  });

  it('does not judge supervisors of other hosts', () => {
    expect(supervisorState({ host: 'elsewhere', pid: process.pid, startTicks: 1 })).toBe('other-host');
  });
});
