import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';

/**
 * Watches the size of a directory tree and calls `onExceeded` once when it passes the limit. The workspace is
 * a named volume on the daemon's disk, which Docker cannot size on most storage drivers, so the runner measures
 * it. The walk is timed and the interval adapts, so a big repository is not walked more often than it can bear.
 */
export function watchDiskUsage(root: string, limitBytes: number, onExceeded: (bytes: number) => void): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = async () => {
    const started = Date.now();
    const bytes = await treeSize(root, limitBytes);
    if (stopped) return;
    if (bytes > limitBytes) {
      stopped = true;
      onExceeded(bytes);
      return;
    }
    // Walking must not take more than a tenth of the time: at least every 500 ms, less often for big trees.
    timer = setTimeout(tick, Math.max(500, (Date.now() - started) * 10));
  };
  timer = setTimeout(tick, 250);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Bytes used by a tree (allocated blocks, so sparse files count as what they occupy); stops early past `stopAt`. */
export async function treeSize(root: string, stopAt = Number.POSITIVE_INFINITY): Promise<number> {
  let total = 0;
  const pending = [root];
  while (pending.length && total <= stopAt) {
    const dir = pending.pop() as string;
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) pending.push(full);
      const info = await lstat(full).catch(() => undefined);
      if (info) total += info.blocks * 512;
    }
  }
  return total;
}
