import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  currentSupervisor,
  formatHostId,
  formatSupervisor,
  LABEL,
  localHostId,
  ownershipLabels,
  parseHostId,
  parseOwnership,
  parseSupervisor,
  processStartTicks,
  supervisorPlace,
  supervisorState,
} from '../../src/backend/ownership-labels.js';
import { OWNER_FILE, ownershipOf, readOwnerFile, writeOwnerFile } from '../../src/workspace/host-workspace.js';

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

describe('two supervisors with one host name', () => {
  const here = { host: 'box', hostId: { machine: 'a'.repeat(32), boot: '11111111-1111-4111-8111-111111111111', pidNamespace: '4026531836' } };
  // A pid that is surely gone here: were it looked up, it would be called dead.
  const deadPid = { host: 'box', pid: 2 ** 22 + 1, startTicks: 1 };

  it('labels what it makes with the machine, boot and pid namespace of its host, and reads them back', () => {
    const labelled = { ...owner, supervisor: { ...owner.supervisor, hostId: here.hostId } };
    const labels = ownershipLabels(labelled);
    expect(labels[LABEL.supervisorHostId]).toBe(`${'a'.repeat(32)}/11111111-1111-4111-8111-111111111111/4026531836`);
    expect(parseOwnership(labels)).toEqual(labelled);
    // No machine id (most container images have none): the boot and the pid namespace still say.
    expect(parseHostId('/11111111-1111-4111-8111-111111111111/4026532200')).toEqual({ machine: '', boot: '11111111-1111-4111-8111-111111111111', pidNamespace: '4026532200' });
  });

  it("writes the host id into a task dir's owner file too, and reads it back; an older file without one still reads", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-owner-id-'));
    const labelled = { ...owner, supervisor: { ...owner.supervisor, hostId: here.hostId } };
    await writeOwnerFile({ taskId: 'task-1', dir, repoDir: '', artifactsDir: '', stateDir: '' }, labelled, 'running', new Date('2026-11-28T00:00:00Z'));
    const record = await readOwnerFile(dir);
    expect(record?.supervisorHostId).toBe(formatHostId(here.hostId));
    expect(record && ownershipOf(record).supervisor).toEqual(labelled.supervisor);
    const { supervisorHostId: _dropped, ...older } = record ?? {};
    writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify(older));
    const olderRecord = await readOwnerFile(dir);
    expect(olderRecord && ownershipOf(olderRecord).supervisor).toEqual(owner.supervisor);
  });

  it('disowns an object whose host id is damaged, rather than judging it by its host name alone', () => {
    expect(parseOwnership({ ...ownershipLabels(owner), [LABEL.supervisorHostId]: 'garbage' })).toBeUndefined();
  });

  it('knows the host id of this process, and that this process is alive by it', () => {
    const me = currentSupervisor();
    expect(me.hostId).toEqual(localHostId());
    expect(me.hostId?.boot).toMatch(/^[0-9a-f-]{36}$/);
    expect(supervisorState(me)).toBe('alive');
  });

  it('looks up the pid of a supervisor of this boot and pid namespace: a dead one is dead', () => {
    expect(supervisorPlace({ ...deadPid, hostId: here.hostId }, here)).toBe('this-host');
    expect(supervisorState({ ...deadPid, hostId: here.hostId }, here)).toBe('dead');
  });

  it('leaves a supervisor of another machine with this host name to expiry (other-host), whatever its pid', () => {
    const twin = { ...deadPid, hostId: { machine: 'b'.repeat(32), boot: '22222222-2222-4222-8222-222222222222', pidNamespace: '4026531836' } };
    expect(supervisorPlace(twin, here)).toBe('same-name');
    expect(supervisorState(twin, here)).toBe('other-host');
    // Neither machine has a machine id: another boot may be the other machine's, so it is not called dead either.
    const anonymous = { host: 'box', hostId: { ...here.hostId, machine: '' } };
    expect(supervisorState({ ...twin, hostId: { ...twin.hostId, machine: '' } }, anonymous)).toBe('other-host');
  });

  it('leaves a supervisor in another pid namespace of this boot (a container with this host name) to expiry', () => {
    const container = { ...deadPid, hostId: { ...here.hostId, machine: '', pidNamespace: '4026532999' } };
    expect(supervisorPlace(container, here)).toBe('same-name');
    expect(supervisorState(container, here)).toBe('other-host');
  });

  it('calls a supervisor of an earlier boot of this machine dead, whatever its pid now is', () => {
    const before = { host: 'box', pid: process.pid, startTicks: 0, hostId: { ...here.hostId, boot: '33333333-3333-4333-8333-333333333333' } };
    expect(supervisorPlace(before, here)).toBe('earlier-boot');
    expect(supervisorState(before, here)).toBe('dead');
  });

  it('judges an object of an older asp (no host id) by the host name and pid alone, as before', () => {
    expect(supervisorPlace(deadPid, here)).toBe('this-host');
    expect(supervisorState(deadPid, here)).toBe('dead');
    expect(parseOwnership(ownershipLabels(owner))?.supervisor.hostId).toBeUndefined();
  });

  it('goes by the host name alone where this host cannot say its own id', () => {
    const twin = { ...deadPid, hostId: { machine: 'b'.repeat(32), boot: '22222222-2222-4222-8222-222222222222', pidNamespace: '1' } };
    expect(supervisorState(twin, { host: 'box', hostId: undefined })).toBe('dead');
    expect(supervisorState(twin, { host: 'elsewhere', hostId: here.hostId })).toBe('other-host');
  });
});
