import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { keepStandby } from '../../src/cli/standby-keeper.js';

/** A stand-in for `asp pool standby`: it notes each start in a file, says `note` to its keeper, then ends. */
function scriptedStandby(note: object): { entry: string; starts: () => number } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-keeper-'));
  const starts = path.join(dir, 'starts');
  writeFileSync(starts, '');
  const entry = path.join(dir, 'standby.cjs');
  writeFileSync(entry, `require('node:fs').appendFileSync(${JSON.stringify(starts)}, 'x');\nprocess.send(${JSON.stringify(note)}, () => process.disconnect());\n`);
  return { entry, starts: () => readFileSync(starts, 'utf8').length };
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a pool keeper's standby", () => {
  it('is not started again when it said it cannot be one (no build id, no private dir): once, and the log says so', async () => {
    const standby = scriptedStandby({ type: 'unable', reason: 'this asp has no build id' });
    const lines: string[] = [];
    const keeper = keepStandby({ entry: standby.entry, log: (line) => lines.push(line), refillDelayMs: 10, env: {} });
    // A restarting keeper starts the next 500 ms after the first idle exit, then after 1 s: 1.6 s sees at least three.
    await settle(1600);
    await keeper?.stop();
    expect(standby.starts()).toBe(1);
    expect(lines).toEqual([expect.stringMatching(/cannot be one; the pool keeps no standby/)]);
  });

  it('is started again, after a pause, when it ended idle for another reason', async () => {
    const standby = scriptedStandby({ type: 'ready' });
    const lines: string[] = [];
    const keeper = keepStandby({ entry: standby.entry, log: (line) => lines.push(line), refillDelayMs: 10, env: {} });
    await settle(1600);
    await keeper?.stop();
    expect(standby.starts()).toBeGreaterThanOrEqual(2);
    expect(lines[0]).toMatch(/ended idle \(exit 0\); another in \d+ ms/);
  });
});
