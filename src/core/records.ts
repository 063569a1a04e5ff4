/**
 * The records more than one room hands around: a model call (models → tracing), and what became of a task's changes
 * (delivery → tracing, workspace listings). They live here, on the ground floor, so neither room imports the other.
 */

/** Tokens of one model call. */
export interface TokenUsage {
  /** Prompt tokens, those read from the provider's prompt cache included. */
  input: number;
  output: number;
  total: number;
  /** Of `input`, the tokens read from the prompt cache, when the provider says. */
  cachedInput?: number | undefined;
}

/** What one call cost in USD, by kind of token: the parts of `total`, which is what budgets and scores count. */
export interface CostSplit {
  /** Input tokens not read from the cache. */
  input: number;
  cachedInput?: number | undefined;
  output: number;
  total: number;
}

/** A model call made through the host's gateway, recorded as a GENERATION under its step. */
export interface GatewayGeneration {
  step: string;
  /** The agent that made the call, when its client named itself (the sandbox endpoint's `X-Asp-Agent`). */
  agent?: string | undefined;
  model: string;
  provider: string;
  startTime: Date;
  endTime: Date;
  /** When the first chunk of a streamed answer reached the host; absent for an answer that was not streamed. */
  completionStartTime?: Date | undefined;
  usage: TokenUsage;
  costUsd: number | undefined;
  /** `costUsd` split by kind of token (`total` equals `costUsd`); absent when the model has no price. */
  cost?: CostSplit | undefined;
  /** The sampling parameters the request set (temperature, max_tokens, …), capped; absent when it set none. */
  modelParameters?: Record<string, string | number> | undefined;
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
