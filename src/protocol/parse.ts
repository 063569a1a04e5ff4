import { z } from 'zod';
import { isRecord } from '../core/record-guard.js';
import { AGENT_NAME_PATTERN, ARTIFACTS_CHUNK_BYTES, ARTIFACTS_STREAM_MAX_BYTES, NET_CHUNK_BYTES, NET_WINDOW_BYTES, PROTOCOL_TAG, PROTOCOL_VERSION, type ProtocolMessage } from './messages.js';

const stepName = z.string().min(1).max(64);
const channelId = z.string().min(1).max(100);
const agentName = z.string().max(64).regex(AGENT_NAME_PATTERN, 'must be a short name of letters, digits and _.:/-');
const schema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('hello'),
    protocolVersion: z.number().int(),
    runner: z.string(),
    identity: z.object({ uid: z.number().int(), capEff: z.string().regex(/^[0-9a-f]{16}$/), seccomp: z.number().int(), noNewPrivs: z.number().int().optional() }).optional(),
  }),
  z.object({
    type: z.literal('step.start'),
    step: stepName,
    run: z.string(),
    timeoutMs: z.number().nonnegative(),
    at: z.string(),
  }),
  z.object({
    type: z.literal('step.log'),
    step: stepName,
    stream: z.enum(['stdout', 'stderr']),
    data: z.string(),
  }),
  z.object({
    type: z.literal('step.end'),
    step: stepName,
    exitCode: z.number().int(),
    durationMs: z.number().nonnegative(),
    timedOut: z.boolean().optional(),
    droppedBytes: z.number().nonnegative().optional(),
    reason: z.string().max(1000).optional(),
  }),
  z.object({
    type: z.literal('artifact'),
    path: z.string().min(1).max(4096),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    bytes: z.number().int().nonnegative(),
  }),
  z.object({
    type: z.literal('generation'),
    step: stepName,
    agent: agentName.optional(),
    model: z.string().max(200),
    usage: z.object({
      input: z.number().nonnegative().optional(),
      output: z.number().nonnegative().optional(),
      total: z.number().nonnegative().optional(),
    }),
    costUsd: z.number().nonnegative().optional(),
  }),
  z.object({
    type: z.literal('task.end'),
    status: z.enum(['passed', 'failed', 'timeout']),
    exitCode: z.number().int(),
  }),
  z.object({ type: z.literal('warning'), message: z.string().max(10_000), fault: z.literal('engine-disk-full').optional() }),
  z.object({
    type: z.literal('model.request'),
    id: z.string().min(1).max(100),
    step: stepName,
    agent: agentName.optional(),
    body: z.record(z.string(), z.unknown()),
  }),
  z.object({
    type: z.literal('artifacts.chunk'),
    data: z
      .string()
      .max(Math.ceil(ARTIFACTS_CHUNK_BYTES / 3) * 4)
      .regex(/^[A-Za-z0-9+/]*={0,2}$/),
  }),
  z.object({
    type: z.literal('net.open'),
    id: channelId,
    step: stepName,
    // A name or an address, as the runner's proxy parsed it: no zone, no brackets, no escapes.
    host: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[A-Za-z0-9._:-]+$/),
    port: z.number().int().min(1).max(65535),
    via: z.enum(['connect', 'http']),
    method: z
      .string()
      .regex(/^[A-Z]{1,20}$/)
      .optional(),
  }),
  z.object({
    type: z.literal('net.data'),
    id: channelId,
    data: z
      .string()
      .min(1)
      .max(Math.ceil(NET_CHUNK_BYTES / 3) * 4)
      .regex(/^[A-Za-z0-9+/]*={0,2}$/),
  }),
  z.object({ type: z.literal('net.ack'), id: channelId, bytes: z.number().int().positive().max(NET_WINDOW_BYTES) }),
  z.object({ type: z.literal('net.end'), id: channelId }),
  z.object({ type: z.literal('net.close'), id: channelId, reason: z.string().max(1000).optional() }),
  z.object({ type: z.literal('artifacts.end'), bytes: z.number().int().nonnegative().max(ARTIFACTS_STREAM_MAX_BYTES), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
]);

export type ParsedLine = { kind: 'message'; message: ProtocolMessage } | { kind: 'invalid'; reason: string; line: string };

/** Parses one protocol line. Never throws: a malformed or unknown line becomes `invalid` for the caller to record. */
export function parseProtocolLine(line: string): ParsedLine {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { kind: 'invalid', reason: 'not JSON', line: preview(line) };
  }
  if (!isRecord(raw) || Array.isArray(raw)) {
    return { kind: 'invalid', reason: 'not a JSON object', line: preview(line) };
  }
  const record = raw;
  if (record[PROTOCOL_TAG] !== PROTOCOL_VERSION) {
    return { kind: 'invalid', reason: `missing "${PROTOCOL_TAG}": ${PROTOCOL_VERSION} tag`, line: preview(line) };
  }
  const { [PROTOCOL_TAG]: _tag, ...body } = record;
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join('.') : 'type';
    return { kind: 'invalid', reason: `${where}: ${issue?.message ?? 'invalid'}`, line: preview(line) };
  }
  return { kind: 'message', message: parsed.data as ProtocolMessage };
}

function preview(line: string): string {
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
