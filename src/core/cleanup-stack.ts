/**
 * Undoes what a task made, in reverse order, whatever path the task took. Node 20 has `Symbol.asyncDispose` but no
 * global `AsyncDisposableStack`, so this is asp's own: `await using stack = new CleanupStack(...)` in a phase list,
 * and each resource deferred onto it the moment it exists. Disposal is idempotent (a second call does nothing), a
 * failing undo is reported and the rest still run, and what is deferred after disposal is undone at once, so a
 * resource that finished being made after an interrupt cannot be forgotten.
 */

/** Where a phase puts the undo of what it made. */
export interface CleanupScope {
  /**
   * Undoes `what` at disposal. A `keepable` entry is left alone when the stack is disposed with `keep` (the user's
   * --keep: the sandbox stays to be looked at), never otherwise.
   */
  defer(what: string, undo: () => Promise<void> | void, options?: { keepable?: boolean }): void;
}

export interface CleanupFailure {
  what: string;
  error: unknown;
}

interface Entry {
  what: string;
  undo: () => Promise<void> | void;
  keepable: boolean;
}

export class CleanupStack implements CleanupScope, AsyncDisposable {
  readonly #entries: Entry[] = [];
  #disposal: Promise<CleanupFailure[]> | undefined;
  #keep = false;

  /** `onFailure` hears each undo that failed (once each); disposal never throws. */
  constructor(private readonly onFailure: (failure: CleanupFailure) => void = () => {}) {}

  defer(what: string, undo: () => Promise<void> | void, options: { keepable?: boolean } = {}): void {
    const entry = { what, undo, keepable: options.keepable ?? false };
    if (this.#disposal) {
      // Made after the stack was disposed (a creation that was in flight): undone now, after what was disposed.
      void this.#disposal.then(() => this.#run([entry]));
      return;
    }
    this.#entries.push(entry);
  }

  /** What is on the stack, oldest first (for tests and the debug log). */
  get pending(): string[] {
    return this.#entries.map((entry) => entry.what);
  }

  /**
   * Undoes everything, newest first; keepable entries stay when `keep` is set. Every later call (and the
   * `await using` at the end of the scope) returns the first disposal's failures without undoing anything twice.
   */
  dispose(options: { keep?: boolean } = {}): Promise<CleanupFailure[]> {
    // The first disposal decides `keep`, also for what is deferred after it: a later call changes nothing.
    if (!this.#disposal) {
      this.#keep = options.keep ?? false;
      this.#disposal = this.#run(this.#entries.splice(0).reverse());
    }
    return this.#disposal;
  }

  /**
   * Undoes the keepable entries now (a sandbox: its container, its volume), newest first, and leaves one entry in
   * their place that waits for that undo: disposal still ends with them done, in the order it would have undone them.
   * For a task whose sandbox has given all it will (its `.asp/` is in hand): its removal overlaps what follows.
   * Not after disposal began, and not when the stack is to keep them (the caller knows: --keep).
   */
  undoKeepableNow(): void {
    if (this.#disposal) return;
    const at = this.#entries.findIndex((entry) => entry.keepable);
    if (at < 0) return;
    const keepable = this.#entries.filter((entry) => entry.keepable);
    const rest = this.#entries.filter((entry) => !entry.keepable);
    const undoing = this.#run([...keepable].reverse());
    rest.splice(at, 0, { what: keepable.map((entry) => entry.what).join(', '), undo: async () => void (await undoing), keepable: false });
    this.#entries.splice(0, this.#entries.length, ...rest);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose({ keep: this.#keep });
  }

  async #run(entries: Entry[]): Promise<CleanupFailure[]> {
    const failures: CleanupFailure[] = [];
    for (const entry of entries) {
      if (entry.keepable && this.#keep) continue;
      try {
        await entry.undo();
      } catch (error) {
        const failure = { what: entry.what, error };
        failures.push(failure);
        this.onFailure(failure);
      }
    }
    return failures;
  }
}
