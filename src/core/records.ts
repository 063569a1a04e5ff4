/**
 * The records more than one room hands around: a model call (models → tracing), and what became of a task's changes
 * (delivery → tracing, workspace listings). They live here, on the ground floor, so neither room imports the other.
 */

/** A model call made through the host's gateway, recorded as a GENERATION under its step. */
export interface GatewayGeneration {
  step: string;
  model: string;
  provider: string;
  startTime: Date;
  endTime: Date;
  usage: { input: number; output: number; total: number };
  costUsd: number | undefined;
  status: number;
  attempts: number;
  input: unknown;
  output: unknown;
  /** The model the sandbox asked for, when it named one (the host's choice wins). */
  requestedModel: string | undefined;
}

export type HitlStatus = 'not_required' | 'approved' | 'rejected' | 'deferred' | 'awaiting_approval';
export type Decision = 'approve' | 'deny' | 'defer';

/** What became of the changes: the gate's decision, and where they went. */
export interface DeliveryOutcome {
  hitlStatus: HitlStatus;
  decidedBy?: string;
  decidedAt?: string;
  comment?: string;
  pushedTo?: string;
  prUrl?: string;
  /** Where the pull request is, so the PRs of a multi-repo task can link each other. */
  pr?: { owner: string; name: string; number: number };
  /** Set when a push or PR failed: the work is kept and `asp approve` can try again. */
  error?: string;
}
