import { createHash } from 'node:crypto';
import { ARTIFACTS_STREAM_MAX_BYTES, type ArtifactsEndMessage } from '../protocol/messages.js';

/**
 * Gathers the `.asp/` tar the runner streams in `artifacts.chunk` lines. The protocol is untrusted input: the tar
 * is used only when it arrived whole, within the size limit, and matching the length and digest of its one
 * `artifacts.end`. Anything else (a chunk after the end, a second end, too many bytes) spoils it, and the host
 * copies `.asp/` out of the stopped container instead. Either way every entry is checked before it lands.
 */
export class ArtifactStream {
  private parts: Buffer[] = [];
  private bytes = 0;
  private readonly hash = createHash('sha256');
  private ended: ArtifactsEndMessage | undefined;
  private spoiled: string | undefined;

  chunk(data: string): void {
    if (this.spoiled) return;
    if (this.ended) return this.spoil('a chunk after the end');
    const piece = Buffer.from(data, 'base64');
    if (this.bytes + piece.length > ARTIFACTS_STREAM_MAX_BYTES) return this.spoil(`more than ${ARTIFACTS_STREAM_MAX_BYTES} bytes`);
    this.parts.push(piece);
    this.bytes += piece.length;
    this.hash.update(piece);
  }

  end(message: ArtifactsEndMessage): void {
    if (this.spoiled) return;
    if (this.ended) return this.spoil('a second end');
    this.ended = message;
  }

  /** The whole tar, or why there is none (not streamed, cut short, or spoiled). */
  result(): { tar: Buffer } | { missing: string } {
    if (this.spoiled) return { missing: this.spoiled };
    if (!this.ended) return { missing: this.bytes ? 'the stream was cut short' : 'not streamed' };
    if (this.ended.bytes !== this.bytes) return { missing: `${this.bytes} bytes arrived, ${this.ended.bytes} announced` };
    if (this.ended.sha256 !== this.hash.copy().digest('hex')) return { missing: 'the digest does not match' };
    return { tar: Buffer.concat(this.parts, this.bytes) };
  }

  private spoil(reason: string): void {
    this.spoiled = reason;
    this.parts = [];
  }
}
