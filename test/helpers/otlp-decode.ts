/**
 * Decodes OTLP trace export requests, JSON or protobuf, into plain spans: what the local Langfuse stand-in
 * records. The protobuf reader covers the fields of opentelemetry/proto/collector/trace/v1 that Langfuse reads;
 * it is small on purpose, so the receiver needs nothing but Node.
 */
export interface DecodedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  scope: string;
  startMs: number;
  endMs: number;
  attributes: Record<string, unknown>;
  status: { code: number; message?: string };
  /** The attributes of the span's resource (`service.name`, `service.version`). */
  resource?: Record<string, unknown>;
}

// ---- JSON (what the Langfuse span processor sends) ----

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: Array<{ key: string; value?: JsonAnyValue }> };
}
interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: Array<{ key: string; value?: JsonAnyValue }>;
  status?: { code?: number; message?: string };
}
interface JsonRequest {
  resourceSpans?: Array<{ resource?: { attributes?: Array<{ key: string; value?: JsonAnyValue }> }; scopeSpans?: Array<{ scope?: { name?: string }; spans?: JsonSpan[] }> }>;
}

export function decodeJsonRequest(text: string): DecodedSpan[] {
  const request = JSON.parse(text) as JsonRequest;
  const spans: DecodedSpan[] = [];
  for (const resource of request.resourceSpans ?? []) {
    const resourceAttributes = Object.fromEntries((resource.resource?.attributes ?? []).map((attribute) => [attribute.key, jsonValue(attribute.value)]));
    for (const scope of resource.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        spans.push({
          traceId: hexId(span.traceId),
          spanId: hexId(span.spanId),
          parentSpanId: span.parentSpanId ? hexId(span.parentSpanId) : null,
          name: span.name,
          scope: scope.scope?.name ?? '',
          startMs: Number(BigInt(span.startTimeUnixNano) / 1_000_000n),
          endMs: Number(BigInt(span.endTimeUnixNano) / 1_000_000n),
          attributes: Object.fromEntries((span.attributes ?? []).map((attribute) => [attribute.key, jsonValue(attribute.value)])),
          status: { code: span.status?.code ?? 0, ...(span.status?.message ? { message: span.status.message } : {}) },
          resource: resourceAttributes,
        });
      }
    }
  }
  return spans;
}

/** OTLP/JSON ids are hex; some encoders send base64 (the protobuf JSON mapping): accept both. */
function hexId(id: string): string {
  return /^[0-9a-f]+$/i.test(id) ? id.toLowerCase() : Buffer.from(id, 'base64').toString('hex');
}

function jsonValue(value: JsonAnyValue | undefined): unknown {
  if (!value) return null;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.arrayValue) return (value.arrayValue.values ?? []).map(jsonValue);
  if (value.kvlistValue) return Object.fromEntries((value.kvlistValue.values ?? []).map((entry) => [entry.key, jsonValue(entry.value)]));
  return null;
}

// ---- protobuf (what an OTLP proto exporter sends) ----

type Field = { number: number; varint?: bigint; bytes?: Buffer; fixed64?: bigint; fixed32?: number };

function* fields(buffer: Buffer): Generator<Field> {
  let offset = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[offset++];
      if (byte === undefined) throw new Error('protobuf: truncated varint');
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (offset < buffer.length) {
    const key = Number(varint());
    const number = key >>> 3;
    switch (key & 7) {
      case 0:
        yield { number, varint: varint() };
        break;
      case 1:
        yield { number, fixed64: buffer.readBigUInt64LE(offset) };
        offset += 8;
        break;
      case 2: {
        const length = Number(varint());
        if (offset + length > buffer.length) throw new Error('protobuf: truncated field');
        yield { number, bytes: buffer.subarray(offset, offset + length) };
        offset += length;
        break;
      }
      case 5:
        yield { number, fixed32: buffer.readUInt32LE(offset) };
        offset += 4;
        break;
      default:
        throw new Error(`protobuf: unsupported wire type ${key & 7}`);
    }
  }
}

export function decodeProtobufRequest(buffer: Buffer): DecodedSpan[] {
  const spans: DecodedSpan[] = [];
  for (const resourceSpans of fields(buffer)) {
    if (resourceSpans.number !== 1 || !resourceSpans.bytes) continue;
    // ResourceSpans.resource (1) is a Resource, whose attributes (1) are KeyValues.
    const resource: Record<string, unknown> = {};
    for (const field of fields(resourceSpans.bytes)) {
      if (field.number !== 1 || !field.bytes) continue;
      for (const attribute of fields(field.bytes)) {
        if (attribute.number !== 1 || !attribute.bytes) continue;
        const [key, value] = keyValue(attribute.bytes);
        resource[key] = value;
      }
    }
    for (const scopeSpans of fields(resourceSpans.bytes)) {
      if (scopeSpans.number !== 2 || !scopeSpans.bytes) continue;
      let scope = '';
      const raw: Buffer[] = [];
      for (const field of fields(scopeSpans.bytes)) {
        if (field.number === 1 && field.bytes) scope = scopeName(field.bytes);
        if (field.number === 2 && field.bytes) raw.push(field.bytes);
      }
      for (const span of raw) spans.push({ ...protobufSpan(span, scope), resource });
    }
  }
  return spans;
}

function scopeName(buffer: Buffer): string {
  for (const field of fields(buffer)) if (field.number === 1 && field.bytes) return field.bytes.toString('utf8');
  return '';
}

function protobufSpan(buffer: Buffer, scope: string): DecodedSpan {
  const span: DecodedSpan = { traceId: '', spanId: '', parentSpanId: null, name: '', scope, startMs: 0, endMs: 0, attributes: {}, status: { code: 0 } };
  for (const field of fields(buffer)) {
    if (field.number === 1 && field.bytes) span.traceId = field.bytes.toString('hex');
    else if (field.number === 2 && field.bytes) span.spanId = field.bytes.toString('hex');
    else if (field.number === 4 && field.bytes && field.bytes.length > 0) span.parentSpanId = field.bytes.toString('hex');
    else if (field.number === 5 && field.bytes) span.name = field.bytes.toString('utf8');
    else if (field.number === 7 && field.fixed64 !== undefined) span.startMs = Number(field.fixed64 / 1_000_000n);
    else if (field.number === 8 && field.fixed64 !== undefined) span.endMs = Number(field.fixed64 / 1_000_000n);
    else if (field.number === 9 && field.bytes) {
      const [key, value] = keyValue(field.bytes);
      span.attributes[key] = value;
    } else if (field.number === 15 && field.bytes) span.status = protobufStatus(field.bytes);
  }
  return span;
}

function keyValue(buffer: Buffer): [string, unknown] {
  let key = '';
  let value: unknown = null;
  for (const field of fields(buffer)) {
    if (field.number === 1 && field.bytes) key = field.bytes.toString('utf8');
    if (field.number === 2 && field.bytes) value = anyValue(field.bytes);
  }
  return [key, value];
}

function anyValue(buffer: Buffer): unknown {
  for (const field of fields(buffer)) {
    switch (field.number) {
      case 1:
        return field.bytes?.toString('utf8') ?? '';
      case 2:
        return field.varint === 1n;
      case 3:
        return field.varint === undefined ? 0 : Number(BigInt.asIntN(64, field.varint));
      case 4:
        return field.fixed64 === undefined ? 0 : Buffer.from(new BigUint64Array([field.fixed64]).buffer).readDoubleLE(0);
      case 5:
        return field.bytes ? [...fields(field.bytes)].filter((item) => item.number === 1 && item.bytes).map((item) => anyValue(item.bytes as Buffer)) : [];
      case 6:
        return field.bytes ? Object.fromEntries([...fields(field.bytes)].filter((item) => item.number === 1 && item.bytes).map((item) => keyValue(item.bytes as Buffer))) : {};
      case 7:
        return field.bytes?.toString('base64') ?? '';
    }
  }
  return null;
}

function protobufStatus(buffer: Buffer): { code: number; message?: string } {
  const status: { code: number; message?: string } = { code: 0 };
  for (const field of fields(buffer)) {
    if (field.number === 2 && field.bytes) status.message = field.bytes.toString('utf8');
    if (field.number === 3 && field.varint !== undefined) status.code = Number(field.varint);
  }
  return status;
}
