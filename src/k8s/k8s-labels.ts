/*
 * asp's ownership labels (src/backend/ownership-labels.ts) on Kubernetes objects. A label value there is at most 63
 * characters of [A-Za-z0-9._-], starting and ending alphanumeric: the supervisor ("host/pid/ticks") and the expiry
 * (an ISO time) are not. So every ownership fact is an annotation, and those that fit are labels too, for selecting.
 */

const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

export function isLabelValue(value: string): boolean {
  return LABEL_VALUE.test(value);
}

/** The metadata of an object asp makes: labels that can be labels, all of them as annotations. */
export function podMetadata(ownership: Record<string, string>): { labels: Record<string, string>; annotations: Record<string, string> } {
  return {
    labels: Object.fromEntries(Object.entries(ownership).filter(([, value]) => isLabelValue(value))),
    annotations: { ...ownership },
  };
}

/** The ownership labels of an object read back: its annotations, with labels for any fact annotations lack. */
export function ownershipOfMetadata(
  metadata: { labels?: Record<string, string> | null | undefined; annotations?: Record<string, string> | null | undefined } | null | undefined,
): Record<string, string> {
  const labels = metadata?.labels ?? {};
  const annotations = Object.fromEntries(Object.entries(metadata?.annotations ?? {}).filter(([key]) => key.startsWith('asp.')));
  return { ...labels, ...annotations };
}

/**
 * A label selector for filters of the reaper's form ("key" or "key=value"), and the filters it cannot express
 * (a value that is no label value), which the caller applies to what comes back.
 */
export function labelSelector(filters: string[]): { selector: string; rest: Array<[string, string | undefined]> } {
  const selected: string[] = [];
  const rest: Array<[string, string | undefined]> = [];
  for (const filter of filters) {
    const at = filter.indexOf('=');
    const key = at < 0 ? filter : filter.slice(0, at);
    const value = at < 0 ? undefined : filter.slice(at + 1);
    if (value === undefined) selected.push(key);
    else if (isLabelValue(value)) selected.push(`${key}=${value}`);
    else rest.push([key, value]);
  }
  return { selector: selected.join(','), rest };
}
