import { execFileSync } from 'node:child_process';
import { closeSync, linkSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { treeSize, watchDiskUsage } from '../../sandbox/disk-watchdog.js';

const MiB = 1024 ** 2;

/** Writes `mib` MiB of real (non-zero, so no file system can keep it sparse) data. */
function writeReal(file: string, mib: number): void {
  const chunk = Buffer.alloc(MiB, 0x61);
  const fd = openSync(file, 'w');
  try {
    for (let i = 0; i < mib; i++) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}

/**
 * treeSize is what --disk measures. It runs here on a temp dir as the test's own user (no Docker needed); in the
 * sandbox it runs as the runner over /workspace. It must count what a tree occupies on disk, not what its files claim.
 */
describe('disk watchdog: treeSize', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'asp-treesize-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('counts the blocks of real data in nested directories', async () => {
    mkdirSync(path.join(root, 'a', 'b', 'c'), { recursive: true });
    writeReal(path.join(root, 'a', 'b', 'c', 'data.bin'), 8);
    writeReal(path.join(root, 'top.bin'), 2);
    const bytes = await treeSize(root);
    expect(bytes).toBeGreaterThanOrEqual(10 * MiB);
    expect(bytes).toBeLessThan(10 * MiB + 256 * 1024); // plus a few directory and metadata blocks
  });

  it('counts a sparse file as what it occupies, not its apparent size', async () => {
    const file = path.join(root, 'sparse.bin');
    execFileSync('truncate', ['-s', '100G', file]);
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0x61), 0, 4096, 50 * 1024 ** 3);
    closeSync(fd);
    const bytes = await treeSize(root);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThan(MiB);
  });

  it('counts a sparse file once it is filled in with real blocks (dd conv=notrunc)', async () => {
    const file = path.join(root, 'sparse.bin');
    execFileSync('truncate', ['-s', '10G', file]);
    execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=16', 'seek=100', 'conv=notrunc'], { stdio: 'ignore' });
    const bytes = await treeSize(root);
    expect(bytes).toBeGreaterThanOrEqual(16 * MiB);
    expect(bytes).toBeLessThan(17 * MiB);
  });

  it('counts space reserved with fallocate though nothing was written', async () => {
    execFileSync('fallocate', ['-l', '32M', path.join(root, 'reserved.bin')]);
    const bytes = await treeSize(root);
    expect(bytes).toBeGreaterThanOrEqual(32 * MiB);
    expect(bytes).toBeLessThan(33 * MiB);
  });

  it('counts a file with many hard links once', async () => {
    writeReal(path.join(root, 'big.bin'), 8);
    mkdirSync(path.join(root, 'links'));
    for (let i = 0; i < 20; i++) linkSync(path.join(root, 'big.bin'), path.join(root, 'links', `link-${i}`));
    const bytes = await treeSize(root);
    expect(bytes).toBeGreaterThanOrEqual(8 * MiB);
    expect(bytes).toBeLessThan(9 * MiB); // not 21 × 8 MiB
  });

  it('does not follow a symlink out of the tree, nor count its target', async () => {
    const outside = mkdtempSync(path.join(os.tmpdir(), 'asp-treesize-outside-'));
    try {
      writeReal(path.join(outside, 'elsewhere.bin'), 8);
      symlinkSync(outside, path.join(root, 'to-dir'));
      symlinkSync(path.join(outside, 'elsewhere.bin'), path.join(root, 'to-file'));
      expect(await treeSize(root)).toBeLessThan(MiB);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('stops walking once it is past stopAt, and still reports more than stopAt', async () => {
    for (let i = 0; i < 4; i++) {
      mkdirSync(path.join(root, `d${i}`));
      writeReal(path.join(root, `d${i}`, 'data.bin'), 4);
    }
    const bytes = await treeSize(root, 5 * MiB);
    expect(bytes).toBeGreaterThan(5 * MiB);
    expect(bytes).toBeLessThan(16 * MiB); // it did not need to look at everything
  });

  it('is 0-ish for a tree of empty files, and tolerates entries that vanish or a root that is gone', async () => {
    for (let i = 0; i < 50; i++) writeFileSync(path.join(root, `empty-${i}`), '');
    expect(await treeSize(root)).toBeLessThan(MiB);
    expect(await treeSize(path.join(root, 'no-such-dir'))).toBe(0);
  });
});

describe('disk watchdog: watchDiskUsage', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'asp-watchdog-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('calls onExceeded once, with the size it saw, when the tree passes the limit', async () => {
    const seen: number[] = [];
    const stop = watchDiskUsage(root, 4 * MiB, (bytes) => seen.push(bytes));
    try {
      execFileSync('fallocate', ['-l', '8M', path.join(root, 'reserved.bin')]);
      // Generous: it looks every 50 ms.
      for (let waited = 0; seen.length === 0 && waited < 10_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 1200));
      expect(seen).toHaveLength(1);
      expect(seen[0]).toBeGreaterThanOrEqual(8 * MiB);
    } finally {
      stop();
    }
  });

  it('walks again at once when the file system loses more than the room left, however far off the next walk is', async () => {
    const seen: number[] = [];
    const started = Date.now();
    // Walks spaced a minute apart: only the free-space trigger can make the second one happen within the test.
    const stop = watchDiskUsage(root, 4 * MiB, (bytes) => seen.push(bytes), { lookEveryMs: 50, minWalkIntervalMs: 60_000, maxWalkIntervalMs: 60_000 });
    try {
      await new Promise((r) => setTimeout(r, 300)); // the first walk has seen an empty tree
      execFileSync('fallocate', ['-l', '64M', path.join(root, 'reserved.bin')]);
      for (let waited = 0; seen.length === 0 && waited < 20_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
      expect(seen).toHaveLength(1);
      expect(seen[0]).toBeGreaterThanOrEqual(64 * MiB);
      expect(Date.now() - started).toBeLessThan(30_000); // generous; well under the minute the spacing asked for
    } finally {
      stop();
    }
  });

  it('a loss of free space alone never stops a step: what the walk counts does', async () => {
    const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'asp-watchdog-neighbour-'));
    const seen: number[] = [];
    const stop = watchDiskUsage(root, 4 * MiB, (bytes) => seen.push(bytes), { lookEveryMs: 50, minWalkIntervalMs: 60_000, maxWalkIntervalMs: 60_000 });
    try {
      await new Promise((r) => setTimeout(r, 300));
      // A neighbour on the same file system (another container, the host) takes 64 MiB: outside the tree.
      execFileSync('fallocate', ['-l', '64M', path.join(elsewhere, 'neighbour.bin')]);
      await new Promise((r) => setTimeout(r, 1000));
      expect(seen).toEqual([]);
    } finally {
      stop();
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it('does not fire for hard links of a file under the limit', async () => {
    writeReal(path.join(root, 'big.bin'), 3);
    for (let i = 0; i < 10; i++) linkSync(path.join(root, 'big.bin'), path.join(root, `link-${i}`));
    const seen: number[] = [];
    const stop = watchDiskUsage(root, 4 * MiB, (bytes) => seen.push(bytes));
    await new Promise((r) => setTimeout(r, 1500));
    stop();
    expect(seen).toEqual([]);
  });
});
