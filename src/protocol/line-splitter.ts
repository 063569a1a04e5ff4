/**
 * Splits a byte stream into lines with a hard cap on line length, so a sandbox that never prints a newline
 * cannot make the host buffer without bound (Node strings top out near 512 MB).
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private pending = 0;
  private overflowing = false;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: (droppedBytes: number) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(0x0a, start);
      if (newline === -1) {
        this.append(chunk.subarray(start));
        return;
      }
      this.append(chunk.subarray(start, newline));
      this.emit();
      start = newline + 1;
    }
  }

  /** Emits what is left when the stream ends without a final newline. */
  end(): void {
    if (this.pending > 0 || this.overflowing) this.emit();
  }

  private append(part: Buffer): void {
    if (part.length === 0) return;
    if (this.overflowing || this.pending + part.length > this.maxLineBytes) {
      this.overflowing = true;
      this.pending += part.length;
      return;
    }
    this.parts.push(part);
    this.pending += part.length;
  }

  private emit(): void {
    if (this.overflowing) this.onOverflow(this.pending);
    else if (this.pending > 0) this.onLine(Buffer.concat(this.parts, this.pending).toString('utf8'));
    this.parts = [];
    this.pending = 0;
    this.overflowing = false;
  }
}
