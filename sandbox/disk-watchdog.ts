import { constants } from 'node:fs';
import { lstat, open, opendir, statfs } from 'node:fs/promises';
import path from 'node:path';

/** When the watchdog looks and walks; the defaults are what the runner uses, tests shift them. */
export interface WatchTiming {
  /** How often it looks (statfs, or a walk when one is due): a `dd` from /dev/zero writes several GB/s. */
  lookEveryMs: number;
  /** The spacing between two walks, ten times the last walk's time, is kept between these two. */
  minWalkIntervalMs: number;
  maxWalkIntervalMs: number;
}
export const WATCH_TIMING: WatchTiming = { lookEveryMs: 50, minWalkIntervalMs: 50, maxWalkIntervalMs: 10_000 };

/**
 * Watches the size of a directory tree and calls `onExceeded` once when it passes the limit. The workspace is
 * a named volume on the daemon's disk, which Docker cannot size on most storage drivers, so the runner measures
 * it by walking it (treeSize). A walk is timed and the walks are spaced so that walking takes about a tenth of the
 * time: a small tree is walked every 50 ms, a big repository every few seconds.
 *
 * The step decides how big the tree is, though: 200,000 empty files make a walk of several seconds, and spacing
 * alone would then hand the step tens of seconds between two looks to write in. So between walks the watchdog also
 * asks the file system the volume lives on how much is free (one statfs, every 50 ms): when it has lost more than
 * the room the tree had left, it walks again at once, whatever the spacing said. The disk is shared (other
 * containers, the host), so a loss only ever triggers a walk; only what the walk counts stops the step. Walks
 * triggered this way still pause as long as the last walk took, so a busy neighbour costs at most half a core.
 */
export function watchDiskUsage(root: string, limitBytes: number, onExceeded: (bytes: number) => void, timing: WatchTiming = WATCH_TIMING): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let walkDueAt = 0;
  let earliestWalkAt = 0;
  let room = limitBytes;
  let freeAtWalk: number | undefined;
  const walk = async () => {
    const started = performance.now();
    freeAtWalk = await freeBytes(root);
    const bytes = await treeSize(root, limitBytes);
    if (stopped) return;
    if (bytes > limitBytes) {
      stopped = true;
      onExceeded(bytes);
      return;
    }
    const now = performance.now();
    const took = now - started;
    room = limitBytes - bytes;
    walkDueAt = now + Math.min(timing.maxWalkIntervalMs, Math.max(timing.minWalkIntervalMs, took * 10));
    earliestWalkAt = now + took;
  };
  const look = async () => {
    // Spacing on the monotonic clock: a wall clock set back must not put the next walk off by as much.
    const now = performance.now();
    if (now >= walkDueAt) await walk();
    else if (now >= earliestWalkAt && freeAtWalk !== undefined) {
      const free = await freeBytes(root);
      if (free !== undefined && freeAtWalk - free > room) await walk();
    }
  };
  const tick = () => {
    look()
      .catch(() => undefined)
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, timing.lookEveryMs);
      });
  };
  timer = setTimeout(tick, 0);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Free bytes of the file system `dir` is on, or undefined where that cannot be asked. */
async function freeBytes(dir: string): Promise<number | undefined> {
  const info = await statfs(dir).catch(() => undefined);
  return info ? info.bfree * info.bsize : undefined;
}

/** How many entries of one directory are lstat'ed at once: enough to keep libuv's thread pool busy. */
const STAT_BATCH = 64;

/**
 * Bytes a tree occupies: allocated blocks, so a sparse file counts as what it occupies and space reserved with
 * `fallocate` counts though nothing was written; a file with several hard links counts once (by device and inode).
 * Links are not followed. Stops early once past `stopAt`. Directories are read as a stream, so a directory of
 * millions of entries a step made costs the runner one batch of memory, not millions of names.
 *
 * Entries that vanish during the walk are skipped (the step keeps running while it is measured). What a file
 * deleted while still open occupies is invisible to any walk: see SECURITY.md.
 */
export async function treeSize(root: string, stopAt = Number.POSITIVE_INFINITY): Promise<number> {
  let total = 0;
  // Only files with more than one link can be met twice, so only their identities are kept.
  const linked = new Set<string>();
  /** Counts what `full` occupies; a directory comes back with its identity, to be walked. */
  const add = async (full: string, shown: string): Promise<PendingDir | undefined> => {
    // bigint: inode numbers of some file systems do not fit in a double, and two files must never look like one.
    const info = await lstat(full, { bigint: true }).catch(() => undefined);
    if (!info) return undefined;
    if (info.nlink > 1n && !info.isDirectory()) {
      const id = `${info.dev}:${info.ino}`;
      if (linked.has(id)) return undefined;
      linked.add(id);
    }
    total += Number(info.blocks) * 512;
    return info.isDirectory() ? { path: shown, dev: info.dev, ino: info.ino } : undefined;
  };
  const pending: PendingDir[] = [];
  const first = await add(root, root);
  if (first === undefined) return total;
  pending.push(first);
  while (total <= stopAt) {
    const dir = pending.pop();
    if (dir === undefined) break;
    // The runner reads any directory (DAC_READ_SEARCH): it must walk only the one it counted. A step can swap a
    // directory, or one above it, for a link to / between the lstat and the open. So the directory is opened without
    // following a last link and checked to be the same inode, then read and its entries stat'ed through the open
    // descriptor (/proc/self/fd/N), never again by a path a step can redirect.
    const handle = await open(dir.path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(() => undefined);
    if (!handle) continue;
    try {
      const opened = await handle.stat({ bigint: true });
      if (opened.dev !== dir.dev || opened.ino !== dir.ino) continue;
      const anchor = `/proc/self/fd/${handle.fd}`;
      const entries = await opendir(anchor, { bufferSize: STAT_BATCH }).catch(() => undefined);
      if (!entries) continue;
      let batch: string[] = [];
      const flush = async () => {
        const dirs = await Promise.all(batch.map((name) => add(path.join(anchor, name), path.join(dir.path, name))));
        for (const sub of dirs) if (sub !== undefined) pending.push(sub);
        batch = [];
      };
      try {
        for await (const entry of entries) {
          batch.push(entry.name);
          if (batch.length >= STAT_BATCH) {
            await flush();
            if (total > stopAt) break;
          }
        }
      } catch {
        // The directory went away while it was read: what was seen of it counts.
      }
      await flush();
    } finally {
      await handle.close().catch(() => {});
    }
  }
  return total;
}

/** A directory still to walk, with the identity it had when it was counted. */
interface PendingDir {
  path: string;
  dev: bigint;
  ino: bigint;
}
