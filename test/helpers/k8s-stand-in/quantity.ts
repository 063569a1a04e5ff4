/**
 * Kubernetes resource quantities ("500m", "2", "512Mi", "1G", "1e3") as plain numbers of the base unit (cores,
 * bytes). Undefined for text that is not a quantity.
 */
const SUFFIXES: Record<string, number> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

export function parseQuantity(text: string | number | undefined): number | undefined {
  if (typeof text === 'number') return Number.isFinite(text) ? text : undefined;
  if (text === undefined) return undefined;
  const match = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$/.exec(text.trim());
  if (!match) return undefined;
  const [, number = '', exponent, suffix = ''] = match;
  const multiplier = exponent ? 10 ** Number(exponent.slice(1)) : SUFFIXES[suffix];
  if (multiplier === undefined) return undefined;
  return Number(number) * multiplier;
}

/** CPU cores → Docker's NanoCpus. */
export function nanoCpus(cpu: string | number | undefined): number {
  const cores = parseQuantity(cpu);
  return cores === undefined ? 0 : Math.round(cores * 1e9);
}

/** A memory quantity in whole bytes (a fraction rounds up, as the API's canonical form does). */
export function memoryBytes(memory: string | number | undefined): number {
  const bytes = parseQuantity(memory);
  return bytes === undefined ? 0 : Math.ceil(bytes);
}
