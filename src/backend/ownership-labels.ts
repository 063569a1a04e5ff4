import { readFileSync } from 'node:fs';
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
  expiresAt: 'asp.expires-at',
  keep: 'asp.keep',
} as const;

/** Who started an object: the host, the pid and that process's start time, so a reused pid is not taken for a live one. */
export interface SupervisorIdentity {
  host: string;
  pid: number;
  /** Process start time in clock ticks since boot (Linux /proc/<pid>/stat field 22), or 0 where unknown. */
  startTicks: number;
}

export interface Ownership {
  taskId: string;
  runId: string;
  supervisor: SupervisorIdentity;
  expiresAt: Date;
  keep: boolean;
}

export function ownershipLabels(owner: Ownership): Record<string, string> {
  return {
    [LABEL.managed]: 'true',
    [LABEL.task]: owner.taskId,
    [LABEL.run]: owner.runId,
    [LABEL.supervisor]: formatSupervisor(owner.supervisor),
    [LABEL.expiresAt]: owner.expiresAt.toISOString(),
    [LABEL.keep]: owner.keep ? 'true' : 'false',
  };
}

/** Reads labels back; undefined when the object is not asp's (or its labels are damaged: then it is not ours to touch). */
export function parseOwnership(labels: Record<string, string> | undefined | null): Ownership | undefined {
  if (!labels || labels[LABEL.managed] !== 'true') return undefined;
  const taskId = labels[LABEL.task];
  const runId = labels[LABEL.run];
  const supervisor = parseSupervisor(labels[LABEL.supervisor]);
  const expiresAt = new Date(labels[LABEL.expiresAt] ?? '');
  if (!taskId || !runId || !supervisor || Number.isNaN(expiresAt.getTime())) return undefined;
  return { taskId, runId, supervisor, expiresAt, keep: labels[LABEL.keep] === 'true' };
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
  return { host: os.hostname(), pid: process.pid, startTicks: processStartTicks(process.pid) ?? 0 };
}

/** Is the supervisor that owns an object alive? Only answerable on its own host; elsewhere we say "unknown". */
export function supervisorState(identity: SupervisorIdentity, host = os.hostname()): 'alive' | 'dead' | 'other-host' {
  if (identity.host !== host) return 'other-host';
  const ticks = processStartTicks(identity.pid);
  if (ticks === undefined) return 'dead';
  // 0 means we could not read a start time on one side: the pid alone has to do.
  if (ticks === 0 || identity.startTicks === 0) return 'alive';
  return ticks === identity.startTicks ? 'alive' : 'dead';
}

export function labelFilter(extra: Record<string, string> = {}): string[] {
  return [`${LABEL.managed}=true`, ...Object.entries(extra).map(([key, value]) => `${key}=${value}`)];
}
