import { readFile, stat } from 'node:fs/promises';
import { AspError, errorMessage } from '../core/asp-error.js';

/**
 * Reads a file the user named (a pipeline, a task list) as text: a regular file, and no bigger than `maxBytes`,
 * so a wrong path to a device or a huge log fails with one line instead of filling memory.
 */
export async function readInputFile(file: string, maxBytes: number, what: string, hint: string): Promise<string> {
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new Error('not a regular file');
    if (info.size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new AspError('BAD_INPUT', `cannot read ${what} ${file}: ${errorMessage(error)}`, hint);
  }
}
