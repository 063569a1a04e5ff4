import { printable, printableLine } from '../core/printable.js';

/** The longest unfinished line held back for its prefix; past it, the line is printed in pieces. */
const MAX_PARTIAL_CHARS = 64 * 1024;

/**
 * Prints step output to the terminal as it streams, each line prefixed by its step, with a per-step cap:
 * past the cap the rest is dropped with one marker, so a runaway step cannot flood the host.
 */
export class StepOutputPrinter {
  private readonly printed = new Map<string, number>();
  private readonly partial = new Map<string, string>();
  private readonly capped = new Set<string>();

  constructor(
    private readonly write: (text: string) => void,
    private readonly capBytes: number,
  ) {}

  data(step: string, stream: 'stdout' | 'stderr', data: string): void {
    if (this.capped.has(step)) return;
    const used = this.printed.get(step) ?? 0;
    const bytes = Buffer.byteLength(data);
    let text = data;
    if (used + bytes > this.capBytes) {
      text = Buffer.from(data)
        .subarray(0, Math.max(0, this.capBytes - used))
        .toString('utf8');
      this.capped.add(step);
    }
    this.printed.set(step, used + bytes);
    const key = `${step}\0${stream}`;
    const lines = ((this.partial.get(key) ?? '') + text).split('\n');
    let rest = lines.pop() ?? '';
    // An endless line is printed in pieces: held whole, each chunk would copy all of it again (quadratic work,
    // and a supervisor at 350 MB for a 10 MiB line in bench/output-flood).
    if (rest.length > MAX_PARTIAL_CHARS) {
      lines.push(rest);
      rest = '';
    }
    // One write per chunk, not one per line: a flood of short lines would otherwise be thousands of writes.
    // Escaped line by line: a `\r` or an escape sequence in the output can neither overwrite the prefix nor
    // drive the terminal (title, clipboard, screen). The raw bytes stay in events.jsonl and the trace.
    if (lines.length) this.write(lines.map((line) => `${this.prefix(step)}${printable(line)}\n`).join(''));
    this.partial.set(key, rest);
    if (this.capped.has(step)) {
      this.flushStep(step);
      this.write(`${this.prefix(step)}[asp: output passed ${this.capBytes} bytes; the rest is not shown]\n`);
    }
  }

  /** The step's name comes from the sandbox too: it is escaped like the output, and on one line. */
  private prefix(step: string): string {
    return `[${printableLine(step)}] `;
  }

  /** Prints what is left of a step's last line when it ends. */
  flushStep(step: string): void {
    for (const stream of ['stdout', 'stderr']) {
      const key = `${step}\0${stream}`;
      const rest = this.partial.get(key);
      if (rest) this.write(`${this.prefix(step)}${printable(rest)}\n`);
      this.partial.delete(key);
    }
  }
}
