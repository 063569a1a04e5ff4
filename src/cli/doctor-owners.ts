import { labelFilter, parseOwnership, supervisorPlace, thisHost, type Here, type SupervisorIdentity } from '../backend/ownership-labels.js';
import type { SandboxBackend } from '../backend/sandbox-backend.js';
import { deliveryHold } from '../delivery/delivery-plan.js';
import { ownershipOf } from '../workspace/host-workspace.js';
import { listWorkspaces } from '../workspace/workspace-list.js';
import type { DoctorCheck } from './doctor-k8s.js';

/**
 * Another machine with this host name on the same daemon (or another container of this machine with its own pid
 * namespace and this name): its objects name our host, and an asp that went by the name alone would take them for
 * those of dead local pids and reap them while they run (and that machine's older asp would do as much to ours).
 * asp tells them apart by the host id label and leaves them to their expiry; this says that it saw some, and what
 * to do. Undefined when the backend cannot be listed (its own check says why), or where /proc gives no boot id.
 */
export async function hostNameCheck(backend: SandboxBackend, workspacesRoot: string, here: Here = thisHost()): Promise<DoctorCheck | undefined> {
  if (!here.hostId) return undefined;
  const objects = await backend.listOwned(labelFilter()).catch(() => undefined);
  if (!objects) return undefined;
  const dirs = await listWorkspaces(workspacesRoot, deliveryHold).catch(() => []);
  const elsewhere = (identity: SupervisorIdentity | undefined) => identity !== undefined && supervisorPlace(identity, here) === 'same-name';
  const onDaemon = objects.filter((object) => elsewhere(parseOwnership(object.labels)?.supervisor)).length;
  const inDirs = dirs.filter((entry) => elsewhere(ownershipOf(entry.record).supervisor)).length;
  const name = here.host;
  if (!onDaemon && !inDirs) return { name: 'hostname', ok: true, detail: `${name}: no objects of another machine with this host name` };
  const counted = [onDaemon ? `${onDaemon} object(s) on ${backend.name === 'k8s' ? 'the cluster' : 'the daemon'}` : '', inDirs ? `${inDirs} task dir(s)` : ''].filter(Boolean).join(' and ');
  return {
    name: 'hostname',
    ok: false,
    advisory: true,
    detail: `${counted} name this host (${name}) but were made on another machine or in another container of that name: asp leaves them to their expiry, an older asp there takes ours for dead — give each machine (or container) its own host name`,
  };
}
