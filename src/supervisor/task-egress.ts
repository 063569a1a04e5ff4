import type { TaskSpec } from '../config/task-spec.js';
import type { Clock } from '../core/clock.js';
import { Allowlist } from '../config/allowlist.js';
import { EgressBudget, EgressRelay, type EgressConnection, type EgressLimits, type EgressSummary, type Lookup } from '../egress/egress-relay.js';
import type { TraceRecorder } from '../tracing/trace-recorder.js';

/**
 * A task's egress (`--allow-host`): its allowlist and caps, the byte budget its sandboxes share, and a relay for
 * each sandbox session. Undefined for a task that allows no host: then nothing of this exists.
 */
export interface TaskEgress {
  allowlist: Allowlist;
  limits: EgressLimits;
  budget: EgressBudget;
  /** A relay for one session (the steps', the check's): its connections go to events.jsonl and the trace. */
  relay(): EgressRelay;
  summary(): EgressSummary;
}

export function openTaskEgress(
  spec: TaskSpec,
  deps: {
    clock: Clock;
    trace: TraceRecorder;
    record: (entry: object) => void;
    warn: (message: string) => void;
    /** Masks the task's secrets: the host and the reason come from the sandbox, which may put a token in a name. */
    mask: (text: string) => string;
    lookup?: Lookup | undefined;
  },
): TaskEgress | undefined {
  const network = spec.network;
  if (!network?.allow.length) return undefined;
  const allowlist = Allowlist.parse(network.allow);
  const limits: EgressLimits = { maxBytes: network.maxBytes, maxConnections: network.maxConnections, connectionTimeoutMs: network.connectionTimeout };
  const budget = new EgressBudget(limits.maxBytes);
  const onConnection = (connection: EgressConnection) => {
    const masked = { ...connection, host: deps.mask(connection.host), step: deps.mask(connection.step), reason: connection.reason === null ? null : deps.mask(connection.reason) };
    deps.record(egressEvent(masked));
    deps.trace.addEgress(masked);
  };
  return {
    allowlist,
    limits,
    budget,
    relay: () => new EgressRelay({ allowlist, limits, budget, clock: deps.clock, onConnection, onWarning: (message) => deps.warn(deps.mask(message)), lookup: deps.lookup }),
    summary: () => ({ ...budget.summary }),
  };
}

/** One connection in events.jsonl: where, whether and why, how much, how long. */
function egressEvent(connection: EgressConnection): object {
  return {
    type: 'egress',
    id: connection.id,
    step: connection.step,
    host: connection.host,
    port: connection.port,
    via: connection.via,
    ...(connection.method ? { method: connection.method } : {}),
    address: connection.address,
    allowed: connection.allowed,
    outcome: connection.outcome,
    ...(connection.reason ? { reason: connection.reason } : {}),
    ...(connection.status !== null ? { status: connection.status } : {}),
    bytesIn: connection.bytesIn,
    bytesOut: connection.bytesOut,
    durationMs: connection.endTime.getTime() - connection.startTime.getTime(),
  };
}
