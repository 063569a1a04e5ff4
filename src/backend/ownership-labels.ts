import { readFileSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import { systemErrorCode } from '../core/asp-error.js';

/**
 * The ownership contract. Every container and volume asp creates carries these labels, and host workspace
 * dirs carry the same facts in an owner file. The reaper trusts these and nothing else (never names).
 */
export const LABEL = {
  managed: 'asp.managed',
  task: 'asp.task',
  run: 'asp.run',
  supervisor: 'asp.supervisor',
  /** Which machine, boot and pid namespace the supervisor's pid belongs to (HostId); absent on older asp's objects. */
  supervisorHostId: 'asp.supervisor-host-id',
  expiresAt: 'asp.expires-at',
  keep: 'asp.keep',
  /** A warm sandbox's pool (its key: the image and limits it was made for); its objects also say which one it is. */
  pool: 'asp.pool',
  poolSandbox: 'asp.pool-sandbox',
  /** On a claim's marker: which warm sandbox the task (the marker's owner) holds. */
  claims: 'asp.claims',
} as const;

/** Who started an object: the host, the pid and that process's start time, so a reused pid is not taken for a live one. */
export interface SupervisorIdentity {
  host: string;
  pid: number;
  /** Process start time in clock ticks since boot (Linux /proc/<pid>/stat field 22), or 0 where unknown. */
  startTicks: number;
  /** Where that pid means something; absent on objects of an older asp, and where /proc does not say. */
  hostId?: HostId | undefined;
}

/**
 * What a host name cannot tell apart: two machines given the same name (a cloned VM, a fixed CI host name), or two
 * containers of one machine with their own pid namespaces (`--network host` shares the host's name), driving one
 * daemon. A pid can be looked up only in the boot and pid namespace it was taken in; the machine id tells an
 * earlier boot of this machine (whose processes are all gone) from another machine.
 */
export interface HostId {
  /** /etc/machine-id (or dbus's copy): empty where there is none, as in most container images. */
  machine: string;
  /** /proc/sys/kernel/random/boot_id: new at every boot, the same for every container on that kernel. */
  boot: string;
  /** The inode of /proc/self/ns/pid. */
  pidNamespace: string;
}

export interface Ownership {
  taskId: string;
  runId: string;
  supervisor: SupervisorIdentity;
  expiresAt: Date;
  keep: boolean;
}

/** Objects outlive their task's deadline by this much before the reaper may take them (time to copy out and clean up). */
export const EXPIRY_GRACE_MS = 10 * 60_000;

/**
 * When a task's objects expire: its deadline plus the grace, counted from its start as the wall clock said then.
 * Read once: every object of the run carries this one value, however the clock is set later, and it lies no further
 * from the real expiry than the clock was off at the start. Only another host's reaper goes by it (a live
 * supervisor is never overruled, whatever the time), and the timeout is at most 7 days, so it is bounded too.
 */
export function expiryOf(startedAt: Date, timeoutMs: number): Date {
  return new Date(startedAt.getTime() + timeoutMs + EXPIRY_GRACE_MS);
}

export function ownershipLabels(owner: Ownership): Record<string, string> {
  const { hostId } = owner.supervisor;
  return {
    [LABEL.managed]: 'true',
    [LABEL.task]: owner.taskId,
    [LABEL.run]: owner.runId,
    [LABEL.supervisor]: formatSupervisor(owner.supervisor),
    ...(hostId ? { [LABEL.supervisorHostId]: formatHostId(hostId) } : {}),
    [LABEL.expiresAt]: owner.expiresAt.toISOString(),
    [LABEL.keep]: owner.keep ? 'true' : 'false',
  };
}

/** Reads labels back; undefined when the object is not asp's (or its labels are damaged: then it is not ours to touch). */
export function parseOwnership(labels: Record<string, string> | undefined | null): Ownership | undefined {
  if (!labels || labels[LABEL.managed] !== 'true') return undefined;
  const taskId = labels[LABEL.task];
  const runId = labels[LABEL.run];
  const supervisor = withHostId(parseSupervisor(labels[LABEL.supervisor]), labels[LABEL.supervisorHostId]);
  const expiresAt = new Date(labels[LABEL.expiresAt] ?? '');
  if (!taskId || !runId || !supervisor || Number.isNaN(expiresAt.getTime())) return undefined;
  return { taskId, runId, supervisor, expiresAt, keep: labels[LABEL.keep] === 'true' };
}

/**
 * The identity with its host id, when there is one. A host id that does not parse is a damaged label: the object
 * is then not asp's to touch (undefined), rather than judged by its host name alone.
 */
export function withHostId(identity: SupervisorIdentity | undefined, text: string | undefined): SupervisorIdentity | undefined {
  if (!identity || text === undefined) return identity;
  const hostId = parseHostId(text);
  return hostId ? { ...identity, hostId } : undefined;
}

export function formatHostId(hostId: HostId): string {
  return `${hostId.machine}/${hostId.boot}/${hostId.pidNamespace}`;
}

export function parseHostId(text: string): HostId | undefined {
  const [, machine, boot, pidNamespace] = /^([0-9a-f]{0,64})\/([0-9a-f-]{1,64})\/(\d{1,20})$/.exec(text) ?? [];
  if (machine === undefined || boot === undefined || pidNamespace === undefined) return undefined;
  return { machine, boot, pidNamespace };
}

/** This host's id, read from /proc (and /etc/machine-id); undefined where /proc does not say (not Linux). */
export function localHostId(): HostId | undefined {
  const boot = readText('/proc/sys/kernel/random/boot_id');
  const pidNamespace = /^pid:\[(\d+)\]$/.exec(readLink('/proc/self/ns/pid') ?? '')?.[1];
  if (!boot || !/^[0-9a-f-]{1,64}$/.test(boot) || !pidNamespace) return undefined;
  const machine = [readText('/etc/machine-id'), readText('/var/lib/dbus/machine-id')].find((text) => text && /^[0-9a-f]{32}$/.test(text)) ?? '';
  return { machine, boot, pidNamespace };
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function readLink(file: string): string | undefined {
  try {
    return readlinkSync(file);
  } catch {
    return undefined;
  }
}

export function formatSupervisor(identity: SupervisorIdentity): string {
  return `${identity.host}/${identity.pid}/${identity.startTicks}`;
}

export function parseSupervisor(text: string | undefined): SupervisorIdentity | undefined {
  const [, host, pid, startTicks] = /^(.+)\/(\d+)\/(\d+)$/.exec(text ?? '') ?? [];
  if (host === undefined) return undefined;
  return { host, pid: Number(pid), startTicks: Number(startTicks) };
}

/** The start time of a process on this host, or undefined when no such process exists. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return processExists(pid) ? 0 : undefined;
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return systemErrorCode(error) === 'EPERM';
  }
}

export function currentSupervisor(): SupervisorIdentity {
  const hostId = localHostId();
  return { host: os.hostname(), pid: process.pid, startTicks: processStartTicks(process.pid) ?? 0, ...(hostId ? { hostId } : {}) };
}

/** Where a liveness question is asked: this host's name and id. */
export interface Here {
  host: string;
  hostId: HostId | undefined;
}

export function thisHost(): Here {
  return { host: os.hostname(), hostId: localHostId() };
}

/**
 * Where a supervisor ran, seen from here: on this host (its pid can be looked up), in an earlier boot of this
 * machine (its process is gone with that boot), on another host, or on a host of the same name that is not this
 * one (another machine, or another pid namespace of this machine), which only expiry can judge. An object without a
 * host id (an older asp's), or a host that cannot say its own, goes by the host name alone, as before.
 */
export type SupervisorPlace = 'this-host' | 'earlier-boot' | 'same-name' | 'other-host';

export function supervisorPlace(identity: SupervisorIdentity, here: Here): SupervisorPlace {
  if (identity.host !== here.host) return 'other-host';
  const theirs = identity.hostId;
  const ours = here.hostId;
  if (!theirs || !ours) return 'this-host';
  // One boot id is one running kernel: the same machine, where only the pid namespace can differ.
  if (theirs.boot === ours.boot) return theirs.pidNamespace === ours.pidNamespace ? 'this-host' : 'same-name';
  // Another boot: of this machine when the machine ids agree (and are known), else of another machine of this name.
  return theirs.machine !== '' && theirs.machine === ours.machine ? 'earlier-boot' : 'same-name';
}

/** Is the supervisor that owns an object alive? Only answerable on its own host; elsewhere we say "unknown". */
export function supervisorState(identity: SupervisorIdentity, here: Here = thisHost()): 'alive' | 'dead' | 'other-host' {
  const place = supervisorPlace(identity, here);
  if (place === 'other-host' || place === 'same-name') return 'other-host';
  if (place === 'earlier-boot') return 'dead';
  const ticks = processStartTicks(identity.pid);
  if (ticks === undefined) return 'dead';
  // 0 means we could not read a start time on one side: the pid alone has to do.
  if (ticks === 0 || identity.startTicks === 0) return 'alive';
  return ticks === identity.startTicks ? 'alive' : 'dead';
}

export function labelFilter(extra: Record<string, string> = {}): string[] {
  return [`${LABEL.managed}=true`, ...Object.entries(extra).map(([key, value]) => `${key}=${value}`)];
}
