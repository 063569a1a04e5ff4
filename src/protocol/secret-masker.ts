/**
 * Masks secret values in streamed text. Shared by the sandbox runner and the host (so it stays free of
 * dependencies, like the rest of src/protocol/). A secret split across two chunks is still caught: the end of
 * a chunk that could be the start of a secret is held back until the next chunk or the end of the stream.
 */
export const MASK = '***';

/** Secrets shorter than this are not masked: masking "1" or "ab" everywhere would destroy the output. */
export const MIN_SECRET_LENGTH = 4;

export class SecretMasker {
  private readonly secrets: string[];
  private carry = '';

  constructor(secrets: Iterable<string>) {
    // Longest first, so a secret that contains another is masked whole.
    this.secrets = [...new Set([...secrets].filter((secret) => secret.length >= MIN_SECRET_LENGTH))].sort((a, b) => b.length - a.length);
  }

  get active(): boolean {
    return this.secrets.length > 0;
  }

  /** Masks a whole text at once (no streaming). */
  mask(text: string): string {
    let masked = text;
    for (const secret of this.secrets) masked = masked.split(secret).join(MASK);
    return masked;
  }

  /** Masks the next chunk of a stream; returns what can be released now. */
  push(chunk: string): string {
    if (!this.active) return chunk;
    const masked = this.mask(this.carry + chunk);
    const hold = this.heldBack(masked);
    this.carry = masked.slice(masked.length - hold);
    return masked.slice(0, masked.length - hold);
  }

  /** Releases what was held back at the end of the stream. */
  flush(): string {
    const rest = this.carry;
    this.carry = '';
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some secret. */
  private heldBack(text: string): number {
    let longest = 0;
    for (const secret of this.secrets) {
      for (let length = Math.min(secret.length - 1, text.length); length > longest; length -= 1) {
        if (text.endsWith(secret.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}

/** Environment variable names whose values are treated as secrets. */
export const SECRET_NAME = /(TOKEN|SECRET|PASSWORD|PASSWD|PASS$|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL|AUTH)/i;
