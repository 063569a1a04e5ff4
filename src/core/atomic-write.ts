import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes `file` whole or not at all: the content goes to a fresh temporary file beside it (never one that exists),
 * flushed to the disk (fsync), then renamed over it. A reader sees the old file or the new one, never half of one,
 * also after a crash or a full disk; a failure (ENOSPC) leaves neither the temporary file nor a partial `file`.
 * `content` may be chunks, written in order. `makeDir` creates the directory first; without it a missing one fails.
 */
export async function writeFileAtomically(file: string, content: string | readonly string[], options: { mode?: number; makeDir?: boolean } = {}): Promise<void> {
  if (options.makeDir) await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    const handle = await open(temporary, 'wx', options.mode);
    try {
      // Chunks one after the other: what is written whole need never be one string.
      if (typeof content === 'string') await handle.writeFile(content);
      else for (const chunk of content) await handle.writeFile(chunk);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
