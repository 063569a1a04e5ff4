import { lstatSync } from 'node:fs';

/**
 * Whether `dir` is a real directory (not a link to one) of this user's that nobody else can write or read: where asp
 * keeps what it runs or trusts (V8's code cache of the CLI, a standby's socket). Used by modules that load before the
 * rest of asp, so it depends on nothing but node:fs.
 */
export function isPrivateDir(dir: string): boolean {
  try {
    const stat = lstatSync(dir);
    return stat.isDirectory() && (process.getuid === undefined || stat.uid === process.getuid()) && (stat.mode & 0o077) === 0;
  } catch {
    return false;
  }
}
