import { errorMessage } from '../core/asp-error.js';
import { EXPIRY_GRACE_MS, LABEL, ownershipLabels, type SupervisorIdentity } from '../backend/ownership-labels.js';
import type { SandboxBackend, WarmEntry } from '../backend/sandbox-backend.js';
import type { Log } from '../core/log.js';
import { limitsSchema } from '../config/task-spec.js';
import { newSeq, poolKey, type PoolShape } from './pool-record.js';
import type { WarmSource } from './warm-source.js';

/** How long a batch's warm sandbox may outlive a dead batch before another host's reaper may take it. */
const STOCK_EXPIRY_MS = 60 * 60_000;

/**
 * A batch's own warm sandboxes: while tasks run, the next tasks' sandboxes are made (volume, container created,
 * read back and started, the runner waiting on stdin), so a slot that frees never waits for a create. It keeps up to
 * `depth` ready or in the making, each for the shape (image, limits, runtime) of the next task still to come. The
 * batch owns them (its identity is on their labels): a dead batch's are reaped like its tasks' would be, and
 * `close` retires what no task took.
 */
export class WarmStock {
  private readonly ready = new Map<string, WarmEntry[]>();
  private readonly making = new Map<string, Array<Promise<WarmEntry | undefined>>>();
  /** Shapes of the tasks not yet started, in order. */
  private upcoming: PoolShape[] = [];
  private closed = false;
  /** The last make failed (the engine gone, its disk full): the next is tried only at the next take. */
  private failing = false;

  constructor(
    private readonly backend: SandboxBackend,
    private readonly options: { depth: number; supervisor: SupervisorIdentity; log: Log; now: () => Date },
  ) {}

  /** The shapes of the tasks to come, in the order they start; filling begins at once. */
  plan(shapes: PoolShape[]): void {
    this.upcoming = [...shapes];
    this.fill();
  }

  /** The warm source a task of the batch takes from; a task's start moves the plan on by one. */
  readonly source: WarmSource = async (shape) => {
    const fingerprint = this.backend.warm?.fingerprint ?? '';
    const key = poolKey(shape, fingerprint);
    const index = this.upcoming.findIndex((next) => poolKey(next, fingerprint) === key);
    if (index >= 0) this.upcoming.splice(index, 1);
    this.failing = false;
    const warm = this.backend.warm;
    if (!warm || this.closed) return undefined;
    let entry = this.ready.get(key)?.shift();
    // One on its way for this shape is nearer than a new create.
    if (!entry) {
      const pending = this.making.get(key)?.[0];
      if (pending) entry = (await pending) && this.ready.get(key)?.shift();
    }
    if (!entry) {
      this.fill();
      return undefined;
    }
    const taken = entry;
    return {
      from: 'the batch',
      claim: async (scope, claim) => {
        try {
          // Still running? An engine that restarted since it was made stopped it: then it goes, and the task makes one.
          const running = await warm.ready(taken.pool);
          this.fill();
          if (!running.some((ready) => ready.seq === taken.seq)) {
            await warm.retire(taken).catch(() => false);
            return undefined;
          }
          // With the task's marker: a claimed sandbox is judged by its task (kept, its own expiry), not by the batch.
          return await warm.claim(taken, scope, claim);
        } catch (error) {
          // An engine that cannot rename (or list) just now: the task makes its own, as it would without the stock.
          this.options.log.debug({ sandbox: taken.seq }, `could not take a warm sandbox: ${errorMessage(error)}`);
          return undefined;
        }
      },
    };
  };

  /** Retires every sandbox no task took (after those in the making are made). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.making.values()].flat());
    const warm = this.backend.warm;
    if (!warm) return;
    for (const entry of [...this.ready.values()].flat()) {
      await warm.retire(entry).catch((error: unknown) => this.options.log.warn({ sandbox: entry.seq }, `cannot remove a warm sandbox no task took: ${errorMessage(error)} (asp reap removes it)`));
    }
    this.ready.clear();
  }

  private count(): number {
    return [...this.ready.values()].reduce((sum, list) => sum + list.length, 0) + [...this.making.values()].reduce((sum, list) => sum + list.length, 0);
  }

  private fill(): void {
    const warm = this.backend.warm;
    if (!warm || this.closed || this.failing) return;
    while (this.count() < Math.min(this.options.depth, this.upcoming.length)) {
      // The next task not yet covered by one ready or in the making.
      const shape = this.upcoming[this.count()];
      if (!shape) return;
      const key = poolKey(shape, warm.fingerprint);
      const seq = newSeq(key);
      const labels = {
        ...ownershipLabels({ taskId: 'warm', runId: seq, supervisor: this.options.supervisor, expiresAt: new Date(this.options.now().getTime() + STOCK_EXPIRY_MS + EXPIRY_GRACE_MS), keep: false }),
        [LABEL.pool]: `batch-${process.pid}-${key}`,
      };
      const made = warm
        .prepare({ image: shape.image, limits: { ...limitsSchema.parse({}), ...shape.limits }, runtime: shape.runtime, labels, seq })
        .then(
          (entry) => {
            this.ready.set(key, [...(this.ready.get(key) ?? []), entry]);
            return entry;
          },
          (error: unknown) => {
            this.failing = true;
            this.options.log.debug({}, `could not make a warm sandbox ahead of a task: ${errorMessage(error)}`);
            return undefined;
          },
        )
        .finally(() => {
          const rest = (this.making.get(key) ?? []).filter((pending) => pending !== made);
          if (rest.length) this.making.set(key, rest);
          else this.making.delete(key);
          this.fill();
        });
      this.making.set(key, [...(this.making.get(key) ?? []), made]);
    }
  }
}
