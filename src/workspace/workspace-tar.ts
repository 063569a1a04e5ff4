import { createWriteStream } from 'node:fs';
import { lstat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { packTree, type PackEntry } from './tar-pack.js';

/** uid/gid of the sandbox user: everything copied into the volume belongs to it. */
export const SANDBOX_UID = 1000;
export const SANDBOX_GID = 1000;

/**
 * Packs `entries` of `dir` for the sandbox (its runner unpacks them into the volume), owned by the sandbox user.
 * Symlinks and modes are kept as they are: real repositories need them, and inside the volume they cannot reach the host.
 */
export function packForSandbox(dir: string, entries: PackEntry[]): Readable {
  return packTree(dir, entries, { uid: SANDBOX_UID, gid: SANDBOX_GID, uname: 'asp', gname: 'asp' });
}

export interface ExtractLimits {
  maxFileBytes: number;
  maxTotalBytes: number;
  maxEntries: number;
  maxDepth: number;
}

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = {
  maxFileBytes: 256 * 1024 ** 2,
  maxTotalBytes: 1024 ** 3,
  maxEntries: 10_000,
  maxDepth: 32,
};

export type EntryVerdict = { ok: true; relativePath: string } | { ok: false; reason: string };

/**
 * Decides whether one tar entry coming out of the sandbox may touch the host disk. Written by hand rather than
 * trusting the extractor: tar-fs had traversal CVEs (CVE-2025-48387, CVE-2025-59343) through links and `..`.
 * Only plain files and directories pass; no absolute paths, no `..`, no links, no devices, sizes capped.
 */
export function checkEntry(header: { name: string; type?: string | null; size?: number | null }, root: string, limits: ExtractLimits): EntryVerdict {
  const type = header.type ?? 'file';
  if (type !== 'file' && type !== 'directory') return { ok: false, reason: `${type} entries are not allowed` };
  const name = header.name;
  if (name.includes('\0')) return { ok: false, reason: 'NUL in name' };
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return { ok: false, reason: 'absolute path' };
  const segments = name.split(/[\\/]+/).filter((segment) => segment !== '' && segment !== '.');
  if (segments.some((segment) => segment === '..')) return { ok: false, reason: '".." in path' };
  if (segments[0] !== root) return { ok: false, reason: `outside ${root}/` };
  const inner = segments.slice(1);
  if (inner.length > limits.maxDepth) return { ok: false, reason: 'nested too deep' };
  if (type === 'file' && (header.size ?? 0) > limits.maxFileBytes) return { ok: false, reason: `larger than ${limits.maxFileBytes} bytes` };
  return { ok: true, relativePath: inner.join('/') };
}

export interface ExtractResult {
  files: Array<{ path: string; bytes: number }>;
  rejected: Array<{ name: string; reason: string }>;
}

/**
 * Extracts the archive of a sandbox dir (`root/...`) into `destination`, entry by entry, after checkEntry.
 * Rejected entries are skipped and reported, never written. Any name that passes is data: the host keeps its own
 * files outside `destination` (host-workspace.ts, HOST_STATE_DIR), so no name needs to be refused for being its.
 */
export async function extractChecked(archive: Readable, destination: string, options: { root: string; limits?: ExtractLimits }): Promise<ExtractResult> {
  const limits = options.limits ?? DEFAULT_EXTRACT_LIMITS;
  const result: ExtractResult = { files: [], rejected: [] };
  const extract = tarStream.extract();
  let total = 0;
  let entries = 0;
  await mkdir(destination, { recursive: true });

  extract.on('entry', (header, stream, next) => {
    const drain = () => {
      stream.on('end', () => next());
      stream.resume();
    };
    const skip = (reason: string) => {
      result.rejected.push({ name: header.name, reason });
      drain();
    };
    entries += 1;
    if (entries > limits.maxEntries) return skip(`more than ${limits.maxEntries} entries`);
    const verdict = checkEntry(header, options.root, limits);
    if (!verdict.ok) return skip(verdict.reason);
    // The root entry is the directory itself, which already exists.
    if (verdict.relativePath === '') return drain();
    const size = header.size ?? 0;
    if (total + size > limits.maxTotalBytes) return skip(`total output over ${limits.maxTotalBytes} bytes`);
    total += size;
    const target = path.join(destination, verdict.relativePath);
    // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- tar-stream types its entries as streamx streams, which Node's stream functions take as they do their own
    write(header.type === 'directory', target, stream as unknown as Readable, destination)
      .then(() => {
        if (header.type !== 'directory') result.files.push({ path: verdict.relativePath, bytes: size });
        next();
      })
      .catch((error: unknown) => next(error instanceof Error ? error : new Error(String(error))));
  });

  await pipeline(archive, extract);
  return result;
}

async function write(isDirectory: boolean, target: string, stream: Readable, destination: string): Promise<void> {
  if (isDirectory) {
    await mkdir(target, { recursive: true, mode: 0o755 });
    stream.resume();
    await new Promise((resolve) => stream.on('end', resolve));
    return;
  }
  await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
  await refuseLinkOnPath(target, destination);
  // Mode is fixed: artifacts are data, never executables on the host.
  await pipeline(stream, createWriteStream(target, { mode: 0o644 }));
}

/** Belt and braces: never write through a symlink, even one that should not be able to exist. */
async function refuseLinkOnPath(target: string, destination: string): Promise<void> {
  let current = target;
  while (current.startsWith(destination) && current !== destination) {
    const stat = await lstat(current).catch(() => undefined);
    if (stat?.isSymbolicLink()) throw new Error(`refusing to write through a symlink at ${current}`);
    current = path.dirname(current);
  }
}
