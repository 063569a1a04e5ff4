import { randomBytes } from 'node:crypto';

/** A readable id such as `task-20261125-0412-fix-auth-bug`; the caller claims it atomically and retries with a suffix. */
export function generateTaskId(task: string, now: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  const stamp = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}-${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}`;
  const slug = slugify(task) || 'run';
  return `task-${stamp}-${slug}`;
}

export function slugify(text: string, maxLength = 32): string {
  const full = text
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  if (full.length <= maxLength) return full;
  // Cut at a word boundary when one is near, so ids read as words.
  const cut = full.slice(0, maxLength + 1);
  const lastDash = cut.lastIndexOf('-');
  return (lastDash > maxLength / 2 ? cut.slice(0, lastDash) : full.slice(0, maxLength)).replace(/-+$/g, '');
}

/** The id of one attempt at a task: traces and labels carry it, so a retry never collides with an earlier run. */
export function generateRunId(now: Date): string {
  return `${now.getTime().toString(36)}-${randomBytes(4).toString('hex')}`;
}
