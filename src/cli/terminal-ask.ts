import type { Decision, GateSummary } from '../delivery/delivery-plan.js';

export type Ask = (summary: GateSummary) => Promise<Decision>;

/** Set by a standby asp process (standby-server.ts) for its run: its client's terminal, or none. */
let standbyAsk: { ask: Ask | undefined } | undefined;

export function setStandbyAsk(ask: Ask | undefined): void {
  standbyAsk = { ask };
}

/** Who answers at the HITL gate: a person at this terminal (stdin and stderr both one), or nobody. */
export function terminalAsk(): Ask | undefined {
  if (standbyAsk) return standbyAsk.ask;
  return process.stdin.isTTY && process.stderr.isTTY ? async (summary) => (await import('./hitl-prompt.js')).askAtTerminal(summary) : undefined;
}
