/**
 * Runs `work` over `items`, at most `limit` at a time, and resolves with the results in input order: the one pool
 * of asp (the reaper's removals, a batch's tasks). Items start in order as slots free up. `work` must handle its
 * own failures (the reaper turns them into report items, a batch into task outcomes), so one bad item cannot stop
 * the others; a `work` that throws anyway rejects the whole map once the items in flight have settled.
 */
export async function mapBounded<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  // One iterator shared by the workers: each takes the next item not yet taken.
  const queue = items.entries();
  const worker = async (): Promise<void> => {
    for (const [index, item] of queue) results[index] = await work(item);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}
