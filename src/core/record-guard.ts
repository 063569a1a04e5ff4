/**
 * The check a parsed JSON value (or any `unknown`) needs before its fields are read by name. Arrays pass, as they do
 * `typeof value === 'object'`: reading a named field of one is `undefined`, which callers already handle.
 */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/**
 * What `value?.a?.[0]?.b` would be, for a value whose shape is not known yet (a provider's reply, an error's cause):
 * undefined as soon as a step is not an object. The result is still `unknown`, for the caller to check.
 */
export function valueAt(value: unknown, ...path: Array<string | number>): unknown {
  let current = value;
  for (const key of path) {
    if (!isRecord(current)) return undefined;
    current = current[key];
  }
  return current;
}
