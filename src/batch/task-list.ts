import { createHash } from 'node:crypto';
import { AspError, errorMessage } from '../core/asp-error.js';
import { readInputFile } from '../config/input-file.js';
import { describeIssue, taskSpecSchema, type TaskSpec } from '../config/task-spec.js';

const MAX_TASK_FILE_BYTES = 64 * 1024 * 1024;

export interface BatchEntry {
  /** Stable key of the task within the batch (its id, or its line), for the journal and the reports. */
  key: string;
  /**
   * What --shard hashes: `id:<id>`, or for a task without an id its line's content (`content:<canonical JSON>`),
   * never its line number, so a task keeps its shard when lines are reordered, added or removed.
   */
  shardKey: string;
  line: number;
  spec: TaskSpec;
}

export interface InvalidLine {
  line: number;
  message: string;
}

export interface TaskList {
  entries: BatchEntry[];
  invalid: InvalidLine[];
  /** `sha256:<hex>` of the list's text: which list a report is of, wherever the file sat (shards on other machines). */
  digest: string;
}

/**
 * Reads a task list: JSON lines (one task spec per line; blank lines and `#` comments skipped) or a JSON array.
 * Every line is validated up front and every bad one is reported with its line number.
 */
export async function readTaskList(file: string): Promise<TaskList> {
  const text = await readInputFile(file, MAX_TASK_FILE_BYTES, 'task list', 'pass a readable .jsonl (one task per line) or .json (an array of tasks) file');
  const raw = text.trimStart().startsWith('[') ? fromArray(text, file) : fromLines(text);
  const entries: BatchEntry[] = [];
  const invalid: InvalidLine[] = [];
  const seen = new Map<string, number>();
  for (const item of raw) {
    if ('error' in item) {
      invalid.push({ line: item.line, message: item.error });
      continue;
    }
    const parsed = taskSpecSchema.safeParse(item.value);
    if (!parsed.success) {
      invalid.push({ line: item.line, message: describeIssue(parsed.error) });
      continue;
    }
    const key = parsed.data.id ?? `line-${item.line}`;
    const previous = seen.get(key);
    if (previous !== undefined) {
      invalid.push({ line: item.line, message: `id "${key}" is used on line ${previous} already` });
      continue;
    }
    seen.set(key, item.line);
    const shardKey = parsed.data.id !== undefined ? `id:${parsed.data.id}` : `content:${canonicalJson(item.value)}`;
    entries.push({ key, shardKey, line: item.line, spec: parsed.data });
  }
  if (entries.length === 0 && invalid.length === 0) {
    throw new AspError('BAD_INPUT', `task list ${file} has no tasks`, 'write one task spec per line, e.g. {"repo": "...", "steps": [{"name": "test", "run": "npm test"}]}');
  }
  return { entries, invalid, digest: listDigest(text) };
}

export function listDigest(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/**
 * JSON with every object's keys sorted and no spacing: the same task written with its fields in another order or
 * with other spacing is the same text. It is the line as written, not the parsed spec, whose defaults may change
 * from one asp version to the next and would move tasks between shards.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const fields = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${fields.map(([name, field]) => `${JSON.stringify(name)}:${canonicalJson(field)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

type RawItem = { line: number; value: unknown } | { line: number; error: string };

function fromLines(text: string): RawItem[] {
  const items: RawItem[] = [];
  text.split('\n').forEach((content, index) => {
    const trimmed = content.trim();
    if (!trimmed || trimmed.startsWith('#') || trimmed.startsWith('//')) return;
    try {
      items.push({ line: index + 1, value: JSON.parse(trimmed) });
    } catch (error) {
      items.push({ line: index + 1, error: `not valid JSON (${errorMessage(error)})` });
    }
  });
  return items;
}

function fromArray(text: string, file: string): RawItem[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AspError('BAD_INPUT', `task list ${file} is not valid JSON: ${errorMessage(error)}`, 'fix the JSON, or write one task per line (.jsonl)');
  }
  if (!Array.isArray(value)) throw new AspError('BAD_INPUT', `task list ${file} is not an array`, 'write a JSON array of task specs');
  // Items of an array have no line of their own: number them 1, 2, 3 as "lines".
  return value.map((item: unknown, index) => ({ line: index + 1, value: item }));
}

/** One line per bad task, for the error message of a batch that cannot start. */
export function describeInvalid(file: string, invalid: InvalidLine[]): string {
  return invalid.map((entry) => `${file}:${entry.line}: ${entry.message}`).join('\n');
}
