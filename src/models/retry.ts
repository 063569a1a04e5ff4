import { retry } from '../core/retry.js';
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
  const { answer, attempts } = await retry(
    () =>
      attempt().catch((error: unknown): ChatReply => ({
        status: 502,
        body: { error: { message: `model provider unreachable: ${error instanceof Error ? error.message : String(error)}`, type: 'asp_gateway_error' } },
      })),
    {
      attempts: policy.attempts,
      retryable: (reply) => retryable(reply.status),
      delayMs: (number, reply) => {
        const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (number - 1)) * (0.5 + random() / 2);
        return Math.round(Math.min(policy.maxDelayMs, reply.retryAfterMs ?? backoff));
      },
      sleep: policy.sleep,
      onRetry,
    },
  );
  return { reply: answer, attempts };
}
