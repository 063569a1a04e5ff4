import { chmodSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { closeTerminationLog, makeTmpSticky } from '../../sandbox/runtime-tools.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-runner-files-'));
const mode = (file: string) => statSync(file).mode & 0o7777;

describe('what the runner closes or opens in a pod before any step', () => {
  it("closes a 0666 termination log of its own to everyone else (the kubelet's, on the node's disk)", () => {
    const log = path.join(dir, 'termination-log');
    writeFileSync(log, '');
    chmodSync(log, 0o666);
    closeTerminationLog(log);
    expect(mode(log)).toBe(0o600);
    closeTerminationLog(path.join(dir, 'absent')); // outside a pod there is none: nothing to do
  });

  it('makes a 0777 /tmp of its own sticky, and leaves a sticky one as it is', () => {
    const tmp = path.join(dir, 'tmp');
    mkdirSync(tmp);
    chmodSync(tmp, 0o777);
    makeTmpSticky(tmp);
    expect(mode(tmp)).toBe(0o1777);
    chmodSync(tmp, 0o1770);
    makeTmpSticky(tmp);
    expect(mode(tmp)).toBe(0o1770);
  });
});
