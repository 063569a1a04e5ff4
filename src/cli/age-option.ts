import { AspError } from '../core/asp-error.js';
import { parseDuration } from '../config/units.js';

/**
 * `--older-than`: a duration with a unit (`90m`, `36h`, `7d`), a bare number of days like ASP_RETENTION (`7`),
 * or `0` for any age. Anything else is a usage error, so a typo never widens what gets removed.
 */
export function parseAgeOption(flag: string, text: string): number {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 86_400_000;
  const ms = parseDuration(trimmed);
  if (ms === undefined) throw new AspError('BAD_INPUT', `${flag} "${text}" is not an age`, `use a duration such as 90m, 36h or 7d (a bare number means days)`);
  return ms;
}
