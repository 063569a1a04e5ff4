/**
 * The one retry loop of asp (model calls, a batch's infrastructure failures, a volume still in use). An attempt
 * answers with a value, never by throwing: what counts as worth another try is the caller's to say from that value,
 * so a failure that will only fail the same way again (a 400, a failing test) is never repeated.
 */
export interface RetryOptions<T> {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Whether the answer of an attempt is worth another. */
  retryable: (answer: T) => boolean;
  /** The wait after attempt `attempt` (1-based) gave `answer`, before the next. */
  delayMs: (attempt: number, answer: T) => number;
  sleep?: ((ms: number) => Promise<void>) | undefined;
  onRetry?: ((answer: T, attempt: number, delayMs: number) => void) | undefined;
}

/** Calls `attempt` until its answer is not retryable or the attempts are spent; returns the last answer. */
export async function retry<T>(attempt: (number: number) => Promise<T>, options: RetryOptions<T>): Promise<{ answer: T; attempts: number }> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  for (let number = 1; ; number += 1) {
    const answer = await attempt(number);
    if (number >= options.attempts || !options.retryable(answer)) return { answer, attempts: number };
    const delayMs = options.delayMs(number, answer);
    options.onRetry?.(answer, number, delayMs);
    await sleep(delayMs);
  }
}
