import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { AspError, errorMessage } from '../core/asp-error.js';
import { valueAt } from '../core/record-guard.js';
import { errorReply, type ChatCall, type ChatReply, type ModelProvider } from './provider.js';

/**
 * Cassettes: recorded model replies, so demos and tests run with no network and no key. A reply is found by the
 * hash of the request's messages; when no recorded request matches exactly (a different repository, another
 * task text), the next unused reply recorded for the same step is played, so a pipeline replays in order.
 */
export const CASSETTE_VERSION = 1;

export interface CassetteEntry {
  step: string;
  /** sha256 of the request's messages (see requestKey). */
  key: string;
  /** A short preview of the last message, for people reading the file. */
  prompt?: string;
  response: { status: number; body: unknown };
}

export interface Cassette {
  version: number;
  model: string;
  interactions: CassetteEntry[];
}

/** A cassette is a file someone hands over: its shape is checked before a reply is played from it. */
const cassetteSchema = z.object({ version: z.literal(CASSETTE_VERSION), model: z.unknown(), interactions: z.array(z.unknown()) });
const entrySchema = z.object({
  step: z.string(),
  key: z.string(),
  prompt: z.string().optional().catch(undefined),
  response: z.object({ status: z.number(), body: z.unknown() }),
});

export function requestKey(body: Record<string, unknown>): string {
  return createHash('sha256')
    .update(JSON.stringify(body.messages ?? null))
    .digest('hex');
}

export async function readCassette(file: string): Promise<Cassette> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new AspError('BAD_INPUT', `cannot read cassette ${file}: ${errorMessage(error)}`, 'point ASP_MODEL=cassette:<file> at a cassette recorded with ASP_RECORD_CASSETTE');
  }
  const cassette = cassetteSchema.safeParse(json);
  if (!cassette.success) {
    throw new AspError('BAD_INPUT', `cassette ${file} is not a version ${CASSETTE_VERSION} cassette`, 'record it again with ASP_RECORD_CASSETTE');
  }
  const interactions = cassette.data.interactions.map((entry, index): CassetteEntry => {
    const checked = entrySchema.safeParse(entry);
    if (!checked.success) throw new AspError('BAD_INPUT', `cassette ${file}: interaction ${index} needs step, key and response.status`, 'fix or re-record the cassette');
    return checked.data;
  });
  const { model } = cassette.data;
  return { version: CASSETTE_VERSION, model: typeof model === 'string' ? model : 'cassette', interactions };
}

export class CassetteProvider implements ModelProvider {
  readonly name = 'cassette';
  readonly model: string;
  private readonly used = new Set<number>();

  constructor(
    private readonly cassette: Cassette,
    private readonly file: string,
  ) {
    this.model = cassette.model;
  }

  async chat(call: ChatCall): Promise<ChatReply> {
    const key = requestKey(call.body);
    const entries = this.cassette.interactions;
    const unused = (entry: CassetteEntry, index: number) => !this.used.has(index) && entry;
    let index = entries.findIndex((entry, at) => unused(entry, at) && entry.key === key);
    if (index === -1) index = entries.findIndex((entry, at) => unused(entry, at) && entry.step === call.step);
    const entry = entries[index];
    if (!entry) return errorReply(404, `cassette ${this.file} has no reply left for step "${call.step}"`, 'cassette_exhausted');
    this.used.add(index);
    return { status: entry.response.status, body: entry.response.body };
  }
}

/** Wraps a real provider and saves each reply it gives, in order, to a cassette file when closed. */
export class RecordingProvider implements ModelProvider {
  private readonly entries: CassetteEntry[] = [];
  private saved = false;

  constructor(
    private readonly inner: ModelProvider,
    private readonly file: string,
  ) {}

  get name(): string {
    return this.inner.name;
  }
  get model(): string {
    return this.inner.model;
  }

  async chat(call: ChatCall): Promise<ChatReply> {
    const reply = await this.inner.chat(call);
    // Only answers worth replaying: a 429 or a 500 would only be retried.
    if (reply.status < 400) {
      const messages: unknown = call.body.messages;
      const last = Array.isArray(messages) ? valueAt(messages, messages.length - 1, 'content') : undefined;
      this.entries.push({ step: call.step, key: requestKey(call.body), prompt: typeof last === 'string' ? last.slice(0, 200) : undefined, response: { status: reply.status, body: reply.body } });
    }
    return reply;
  }

  async close(): Promise<void> {
    if (this.saved) return;
    this.saved = true;
    const cassette: Cassette = { version: CASSETTE_VERSION, model: this.inner.model, interactions: this.entries };
    const partial = `${this.file}.partial`;
    await writeFile(partial, JSON.stringify(cassette, null, 2) + '\n');
    await rename(partial, this.file);
  }
}
