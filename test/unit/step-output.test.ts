import { describe, expect, it } from 'vitest';
import { StepOutputPrinter } from '../../src/supervisor/step-output.js';

describe('step output printer', () => {
  it('prefixes whole lines with their step, across chunks', () => {
    let out = '';
    const printer = new StepOutputPrinter((text) => (out += text), 1000);
    printer.data('test', 'stdout', 'hel');
    printer.data('test', 'stdout', 'lo\nwor');
    printer.data('lint', 'stdout', 'clean\n');
    printer.flushStep('test');
    expect(out).toBe('[test] hello\n[lint] clean\n[test] wor\n');
  });

  it('stops at the cap with one marker', () => {
    let out = '';
    const printer = new StepOutputPrinter((text) => (out += text), 10);
    printer.data('s', 'stdout', '12345\n67890\nabcdef\n');
    printer.data('s', 'stdout', 'more\n');
    expect(out).toBe('[s] 12345\n[s] 6789\n[s] [asp: output passed 10 bytes; the rest is not shown]\n');
  });

  it('prints an endless line in pieces instead of holding all of it', () => {
    const writes: string[] = [];
    const printer = new StepOutputPrinter((text) => writes.push(text), 10 * 1024 ** 2);
    const chunk = 'a'.repeat(60 * 1024);
    for (let i = 0; i < 20; i += 1) printer.data('flood', 'stdout', chunk);
    printer.flushStep('flood');
    const out = writes.join('');
    expect(out.replace(/\[flood\] |\n/g, '')).toBe(chunk.repeat(20));
    // Nothing held back grows past the limit: every piece is at most the limit plus one chunk.
    expect(Math.max(...out.split('\n').map((line) => line.length))).toBeLessThan(64 * 1024 + chunk.length + 10);
    expect(writes.length).toBeGreaterThan(5);
  });
});
