import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatHostId, ownershipLabels, type HostId } from '../../src/backend/ownership-labels.js';
import { hostNameCheck } from '../../src/cli/doctor-owners.js';
import { DockerBackend } from '../../src/docker/docker-backend.js';
import { OWNER_FILE, type OwnerRecord } from '../../src/workspace/host-workspace.js';
import { FakeDocker } from '../helpers/fake-docker.js';

const ours: HostId = { machine: 'a'.repeat(32), boot: '11111111-1111-4111-8111-111111111111', pidNamespace: '4026531836' };
const theirs: HostId = { machine: 'b'.repeat(32), boot: '22222222-2222-4222-8222-222222222222', pidNamespace: '4026531836' };
const here = { host: 'box', hostId: ours };

const labelled = (run: string, host: string, hostId: HostId | undefined) =>
  ownershipLabels({ taskId: `task-${run}`, runId: run, supervisor: { host, pid: 4242, startTicks: 1, hostId }, expiresAt: new Date('2030-01-01T00:00:00Z'), keep: false });

function rootWith(records: Array<Partial<OwnerRecord>>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'asp-doctor-owners-'));
  records.forEach((record, index) => {
    const dir = path.join(root, `task-${index}`);
    mkdirSync(path.join(dir, '.asp'), { recursive: true });
    const full: OwnerRecord = {
      taskId: `task-${index}`,
      runId: `run-${index}`,
      supervisor: 'box/4242/1',
      expiresAt: '2030-01-01T00:00:00.000Z',
      keep: false,
      status: 'running',
      createdAt: '2026-01-01T00:00:00.000Z',
      ...record,
    };
    writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify(full));
  });
  return root;
}

describe('asp doctor: another machine with this host name', () => {
  it("counts the objects and task dirs that name this host but another machine's id, and says what to do, in one line", async () => {
    const docker = new FakeDocker();
    docker.addContainer('twin', labelled('twin', 'box', theirs));
    docker.addVolume('twin-vol', labelled('twin', 'box', theirs));
    // Not counted: ours, an older asp's (no host id), another host's.
    docker.addContainer('mine', labelled('mine', 'box', ours));
    docker.addContainer('older', labelled('older', 'box', undefined));
    docker.addContainer('other', labelled('other', 'elsewhere', theirs));
    const root = rootWith([{ supervisorHostId: formatHostId(theirs) }, { supervisorHostId: formatHostId(ours) }, {}]);

    const check = await hostNameCheck(new DockerBackend(docker), root, here);

    expect(check).toEqual({
      name: 'hostname',
      ok: false,
      advisory: true,
      detail:
        '2 object(s) on the daemon and 1 task dir(s) name this host (box) but were made on another machine or in another container of that name: asp leaves them to their expiry, an older asp there takes ours for dead — give each machine (or container) its own host name',
    });
    expect(check?.detail).not.toContain('\n');
  });

  it('says all is well when none does', async () => {
    const docker = new FakeDocker();
    docker.addContainer('mine', labelled('mine', 'box', ours));
    expect(await hostNameCheck(new DockerBackend(docker), rootWith([]), here)).toEqual({ name: 'hostname', ok: true, detail: 'box: no objects of another machine with this host name' });
  });

  it('says nothing where this host has no id to compare, or the engine cannot be listed', async () => {
    const docker = new FakeDocker();
    docker.addContainer('twin', labelled('twin', 'box', theirs));
    expect(await hostNameCheck(new DockerBackend(docker), rootWith([]), { host: 'box', hostId: undefined })).toBeUndefined();
    const down = new DockerBackend(docker);
    down.listOwned = () => Promise.reject(new Error('the daemon does not answer'));
    expect(await hostNameCheck(down, rootWith([]), here)).toBeUndefined();
  });
});
