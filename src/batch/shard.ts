import { createHash } from 'node:crypto';
import { AspError } from '../core/asp-error.js';
import type { TaskList } from './task-list.js';

/**
 * One share of a task list: shard `index` of `count`, numbered from 0 as Kubernetes numbers an Indexed Job's pods
 * (JOB_COMPLETION_INDEX), so `--shard $JOB_COMPLETION_INDEX/8` needs no arithmetic.
 */
export interface Shard {
  index: number;
  count: number;
}

/** More shards than this is a typo, not a fleet (an Indexed Job allows 100 000 completions; so does asp). */
export const MAX_SHARDS = 100_000;

const HINT = 'pass --shard i/n with 0 <= i < n (shards are numbered from 0, as JOB_COMPLETION_INDEX is), e.g. --shard 0/4 ... --shard 3/4';

/** Parses `i/n` from `--shard` or ASP_SHARD; anything else is bad input that says what is wrong and the form. */
export function parseShard(text: string, origin: string): Shard {
  const given = `${origin} ${JSON.stringify(text)}`;
  const match = /^(-?\d+)\/(-?\d+)$/.exec(text.trim());
  if (!match) throw new AspError('BAD_INPUT', `${given} is not of the form i/n (shard i of n)`, HINT);
  const index = Number(match[1]);
  const count = Number(match[2]);
  if (count < 1) throw new AspError('BAD_INPUT', `${given}: the shard count ${count} must be at least 1`, HINT);
  if (count > MAX_SHARDS) throw new AspError('BAD_INPUT', `${given}: the shard count ${count} is more than ${MAX_SHARDS}`, HINT);
  if (index < 0) throw new AspError('BAD_INPUT', `${given}: the shard index ${index} is below 0`, HINT);
  if (index >= count) throw new AspError('BAD_INPUT', `${given}: the shard index ${index} is not below the count ${count} (the shards of ${count} are 0 to ${count - 1})`, HINT);
  return { index, count };
}

export function describeShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/**
 * The shard a task belongs to, from its shard key alone: a hash, so the answer does not depend on where the task
 * sits in the list or on which other tasks are in it. sha256 rather than a faster hash because it is the same on
 * every machine and every Node version, which is what lets shards on different machines agree without talking.
 * 48 bits of it modulo the count: the bias that leaves is below 2^-30 for any count asp accepts.
 */
export function shardOf(shardKey: string, count: number): number {
  return createHash('sha256').update(shardKey).digest().readUIntBE(0, 6) % count;
}

/**
 * The tasks of one shard. The shards of a list are disjoint and together the whole list. Invalid lines (run past
 * with --skip-invalid) have no id to hash reliably, and they are counted in shard 0's report only, so a merged
 * report counts each once.
 */
export function takeShard(list: TaskList, shard: Shard): TaskList {
  return {
    ...list,
    entries: list.entries.filter((entry) => shardOf(entry.shardKey, shard.count) === shard.index),
    invalid: shard.index === 0 ? list.invalid : [],
  };
}
