/** Greets someone by name; the demo's whole library. */
export function greet(name) {
  const who = typeof name === 'string' && name.trim() ? name.trim() : 'world';
  return `Hello, ${who}!`;
}
