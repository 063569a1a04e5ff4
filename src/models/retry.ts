import type { ChatReply } from './provider.js';

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  sleep: (ms: number) => Promise<void>;
  random?: () => number;
}

export const DEFAULT_RETRY: Omit<RetryPolicy, 'sleep'> = { attempts: 4, baseDelayMs: 500, maxDelayMs: 20_000 };

/** Rate limits and server errors pass; anything else (400, 401, 404) will fail the same way again. */
export function retryable(status: number): boolean {
  return status === 429 || status === 408 || status >= 500;
}

/**
 * Calls `attempt` until it answers with a status worth keeping, backing off exponentially with jitter (or as long
 * as Retry-After asks, capped). A thrown error (connection refused, reset) counts as a 502. Returns the last reply.
 */
export async function withRetries(
  attempt: () => Promise<ChatReply>,
  policy: RetryPolicy,
  onRetry: (reply: ChatReply, attemptNumber: number, delayMs: number) => void = () => {},
): Promise<{ reply: ChatReply; attempts: number }> {
  const random = policy.random ?? Math.random;
  for (let number = 1; ; number += 1) {
    let reply: ChatReply;
    try {
      reply = await attempt();
    } catch (error) {
      reply = { status: 502, body: { error: { message: `model provider unreachable: ${error instanceof Error ? error.message : String(error)}`, type: 'asp_gateway_error' } } };
    }
    if (!retryable(reply.status) || number >= policy.attempts) return { reply, attempts: number };
    const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (number - 1)) * (0.5 + random() / 2);
    const delayMs = Math.round(Math.min(policy.maxDelayMs, reply.retryAfterMs ?? backoff));
    onRetry(reply, number, delayMs);
    await policy.sleep(delayMs);
  }
}
