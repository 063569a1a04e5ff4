import { valueAt } from '../core/record-guard.js';

/** Why Langfuse did not take a trace, sorted by what the user can do about it. */
export type ExportFailureKind =
  | 'unreachable' // nothing answers at the URL: Langfuse is down, or the URL is wrong
  | 'timeout' // it answered too slowly for the bounded flush
  | 'auth' // 401/403: the keys
  | 'http' // any other refusal (500, 400, ...)
  | 'rejected' // it answered 2xx but said it dropped spans
  | 'interrupted'; // the user stopped asp while it was sending

export class ExportFailure extends Error {
  constructor(
    readonly kind: ExportFailureKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ExportFailure';
  }

  /** A failure that will repeat for every other trace sent to the same server right now. */
  get affectsAll(): boolean {
    return this.kind === 'unreachable' || this.kind === 'timeout' || this.kind === 'auth' || this.kind === 'interrupted';
  }
}

export function httpFailure(status: number, what: string, body: string): ExportFailure {
  if (status === 401 || status === 403) {
    return new ExportFailure('auth', `Langfuse refused the keys for ${what} (HTTP ${status}); check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY`, status);
  }
  const detail = body.replace(/\s+/g, ' ').trim().slice(0, 120);
  return new ExportFailure('http', `Langfuse answered HTTP ${status} to ${what}${detail ? `: ${detail}` : ''}`, status);
}

/** fetch() says "fetch failed" and hides the reason in `cause`: dig out the code (ECONNREFUSED, ENOTFOUND, ...). */
export function networkFailure(error: unknown, url: string): ExportFailure {
  const message = valueAt(error, 'cause', 'message');
  const code = valueAt(error, 'cause', 'code');
  const reason = typeof message === 'string' && message ? message : typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
  return new ExportFailure('unreachable', `cannot reach Langfuse at ${url} (${reason})`);
}
