import { constants } from 'node:fs';
import { lstat, open, realpath } from 'node:fs/promises';
import path from 'node:path';
import { AspError } from '../core/asp-error.js';

const LINK = 'is a symbolic link: asp reads files of the repository only as regular files inside the clone';

/**
 * Reads a file of the host's clone (asp.pipeline.json) as data, without following links: the repository is
 * untrusted, and a committed symlink would make the host read any file it can (`/etc/shadow`, another repository's
 * pipeline) and act on it or quote it in an error. A link, a path that resolves outside the clone, or anything but
 * a regular file is refused in one line that names the file in the clone and nothing of what it points at.
 * Returns undefined when the file is not there.
 */
export async function readCloneFile(cloneDir: string, name: string, options: { maxBytes: number; hint: string }): Promise<string | undefined> {
  const file = path.join(cloneDir, name);
  const refuse = (why: string) => new AspError('BAD_INPUT', `${name} in the repository ${why}`, options.hint);
  const info = await lstat(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
    throw refuse(`cannot be read (${error.code ?? 'error'})`);
  });
  if (!info) return undefined;
  if (info.isSymbolicLink()) throw refuse(LINK);
  if (!info.isFile()) throw refuse('is not a regular file');
  // A link higher up the path (a linked directory) would lead outside as well.
  const [root, real] = await Promise.all([realpath(cloneDir), realpath(file)]).catch(() => [undefined, undefined]);
  if (!root || !real || !real.startsWith(root + path.sep)) throw refuse('resolves outside the clone (through a linked directory)');
  // O_NOFOLLOW: a link swapped in after the checks is refused by the kernel, not followed; O_NONBLOCK: never hang on a FIFO.
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
    throw refuse(error.code === 'ELOOP' ? LINK : `cannot be read (${error.code ?? 'error'})`);
  });
  try {
    const opened = await handle.stat();
    if (!opened.isFile()) throw refuse('is not a regular file');
    if (opened.size > options.maxBytes) throw refuse(`is larger than ${options.maxBytes} bytes`);
    const buffer = Buffer.alloc(opened.size);
    const { bytesRead } = await handle.read(buffer, 0, opened.size, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}
