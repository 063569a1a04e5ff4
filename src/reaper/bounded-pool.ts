/**
 * Runs `work` over `items`, at most `limit` at a time, and resolves with the results in input order.
 * Removal is I/O bound on the daemon: a few calls in flight hide its latency, too many only queue inside it.
 * `work` must handle its own failures (the reaper turns them into report items), so one bad object cannot
 * stop the others.
 */
export async function mapBounded<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next;
      next += 1;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}
