import { readFile } from 'node:fs/promises';
import { parseJournalLine, type JournalRecord } from './journal.js';
import type { TaskOutcome } from './batch-report.js';

/** What the tasks --resume took from the journal cost when they ran, before this run. */
export interface EarlierWork {
  /** How many tasks came from the journal. */
  tasks: number;
  /** The wall time they ran in: the union of their spans, so tasks side by side count once and the gaps between runs not at all. */
  ms: number;
  /** When the first of them started; undefined when none has a time. */
  startedAt: Date | undefined;
}

/**
 * The time of the batch's tasks that this run did not run: each one's span from its journal end record (`at`, back
 * by its `durationMs`). This run's own time plus this is the time of all the tasks a report lists, which a JUnit
 * suite time should be: the wall time of a --resume that ran nothing is a few milliseconds and says nothing.
 */
export function earlierWork(tasks: Array<Pick<TaskOutcome, 'key' | 'resumed'>>, ended: ReadonlyMap<string, Pick<JournalRecord, 'at' | 'durationMs'>>): EarlierWork {
  const resumed = tasks.filter((task) => task.resumed);
  const spans = resumed
    .map((task) => ended.get(task.key))
    .filter((record): record is Pick<JournalRecord, 'at' | 'durationMs'> => record !== undefined)
    .map((record): [number, number] => {
      const end = Date.parse(record.at);
      return [end - (record.durationMs ?? 0), end];
    })
    .sort((a, b) => a[0] - b[0]);
  let ms = 0;
  let open: [number, number] | undefined;
  for (const span of spans) {
    if (open && span[0] <= open[1]) open[1] = Math.max(open[1], span[1]);
    else {
      if (open) ms += open[1] - open[0];
      open = [...span];
    }
  }
  if (open) ms += open[1] - open[0];
  return { tasks: resumed.length, ms, startedAt: spans[0] ? new Date(spans[0][0]) : undefined };
}

/** Each task's last end record in the journal `file` (checked line by line; a damaged line is skipped); empty when unreadable. */
export async function lastEnds(file: string): Promise<Map<string, JournalRecord>> {
  const ended = new Map<string, JournalRecord>();
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const record = line.trim() ? parseJournalLine(line) : undefined;
    if (record?.event === 'end') ended.set(record.key, record);
  }
  return ended;
}
