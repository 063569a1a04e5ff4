import { cause, type StatusCause } from './api-status.js';

/**
 * kubernetes-models checks an object against the API's OpenAPI schema (types, enums, required fields) and throws an
 * ajv ValidationError; this turns its errors into the API's causes (`spec.containers[0].name: Required value`), one
 * per field.
 */
interface SchemaError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

export function schemaCauses(validate: () => void, data: unknown): StatusCause[] {
  try {
    validate();
    return [];
  } catch (error) {
    const errors = schemaErrors(error);
    if (!errors) throw error;
    const byField = new Map<string, StatusCause>();
    for (const entry of errors) {
      const found = causeOf(entry, data);
      if (found.field !== undefined && !byField.has(found.field)) byField.set(found.field, found);
    }
    return [...byField.values()];
  }
}

function schemaErrors(error: unknown): SchemaError[] | undefined {
  if (!(error instanceof Error) || !('errors' in error) || !Array.isArray(error.errors)) return undefined;
  return error.errors.filter(
    (entry): entry is SchemaError => typeof entry === 'object' && entry !== null && typeof (entry as SchemaError).instancePath === 'string' && typeof (entry as SchemaError).keyword === 'string',
  );
}

function causeOf(entry: SchemaError, data: unknown): StatusCause {
  const segments = entry.instancePath.split('/').slice(1).map(unescape);
  const field = fieldPath(segments);
  const value = valueAtPath(data, segments);
  switch (entry.keyword) {
    case 'required':
      return cause.required(joined(field, String(entry.params.missingProperty)));
    case 'enum':
      return cause.notSupported(field, value, Array.isArray(entry.params.allowedValues) ? entry.params.allowedValues.map(String) : []);
    case 'format':
      if (entry.params.format === 'quantity') return cause.invalid(field, value, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
      return cause.invalid(field, value, entry.message ?? 'invalid format');
    default:
      return cause.invalid(field, value, entry.message ?? entry.keyword);
  }
}

/** `spec`, `containers`, `0`, `name` → `spec.containers[0].name`. */
function fieldPath(segments: string[]): string {
  return segments.reduce((path, segment) => (/^\d+$/.test(segment) ? `${path}[${segment}]` : joined(path, segment)), '');
}

function joined(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

function unescape(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

function valueAtPath(data: unknown, segments: string[]): unknown {
  let current = data;
  for (const segment of segments) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}
