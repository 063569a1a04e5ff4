import { afterEach, describe, expect, it, vi } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import { reportFailure } from '../../src/cli/cli-context.js';
import { printable, printableLine, printableLines } from '../../src/core/printable.js';
import { humanLog } from '../../src/core/log.js';
import { StepOutputPrinter } from '../../src/supervisor/step-output.js';

const ESC = '\u001b';
const ATTACKS = {
  csi: `${ESC}[31mred${ESC}[0m`,
  clear: `${ESC}[2J${ESC}[H`,
  title: `${ESC}]0;pwned title\u0007`,
  clipboard: `${ESC}]52;c;ZWNobyBwd25lZA==\u0007`,
  'one-byte CSI (C1)': '\u009b2J',
  'carriage return': 'harmless\r[asp] all tests passed',
};
/** Nothing a terminal would act on: no C0 control but tab and newline, no DEL, no C1. */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe('printable text (issue 14, item 6)', () => {
  it('shows the bidi controls that reorder a line (Trojan Source) as escapes, and keeps right-to-left text itself', () => {
    expect(printable('report\u202egpj.exe')).toBe('report\\u202egpj.exe');
    expect(printableLine('a\u2066b\u2069c')).toBe('a\\u2066b\\u2069c');
    expect(printable('שלום مرحبا')).toBe('שלום مرحبا');
  });

  it('shows escape sequences as visible text: \\x1b, \\r, \\u009b', () => {
    expect(printable(ATTACKS.csi)).toBe('\\x1b[31mred\\x1b[0m');
    expect(printable(ATTACKS.title)).toBe('\\x1b]0;pwned title\\x07');
    expect(printable(ATTACKS.clipboard)).toBe('\\x1b]52;c;ZWNobyBwd25lZA==\\x07');
    expect(printable(ATTACKS['one-byte CSI (C1)'])).toBe('\\u009b2J');
    expect(printable(ATTACKS['carriage return'])).toBe('harmless\\r[asp] all tests passed');
    expect(printable('nul\u0000 bs\b del\u007f')).toBe('nul\\x00 bs\\x08 del\\u007f');
  });

  it('leaves tab, newline and ordinary Unicode alone, and returns clean text as it is', () => {
    const clean = 'tab\there\nnext line: é ü 日本 🚀 ‘quotes’ \\x1b stays as typed';
    expect(printable(clean)).toBe(clean);
  });

  it.each(Object.entries(ATTACKS))('leaves nothing a terminal acts on in %s', (_name, attack) => {
    expect(printable(attack)).not.toMatch(UNSAFE);
    expect(printableLine(`${attack}\n${attack}`)).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });

  it('keeps JSON valid and its value the same: JSON.stringify escapes C0, printable makes DEL and C1 \\u escapes', () => {
    const value = { data: `every control: ${Array.from({ length: 0xa0 }, (_, code) => String.fromCharCode(code)).join('')}` };
    const printed = printable(JSON.stringify(value));
    expect(printed).not.toMatch(UNSAFE);
    expect(JSON.parse(printed)).toEqual(value);
  });

  it('keeps one line on one line (printableLine), or indents the lines after the first (printableLines)', () => {
    expect(printableLine('a\nb\r\n')).toBe('a\\nb\\r\\n');
    expect(printableLines('problems:\nfile:1: bad\nfile:2: worse\n')).toBe('problems:\n  file:1: bad\n  file:2: worse\n');
  });
});

describe('where asp prints', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('the step printer: no escape reaches the terminal, and \\r cannot overwrite the [step] prefix', () => {
    let out = '';
    const printer = new StepOutputPrinter((text) => (out += text), 1 << 20);
    printer.data('show', 'stdout', Object.values(ATTACKS).join('\n') + '\n');
    printer.data('show', 'stderr', 'no newline at the end\r[fake] done');
    printer.data(`evil${ESC}]0;t\u0007`, 'stdout', 'line\n');
    printer.flushStep('show');
    expect(out).not.toMatch(UNSAFE);
    for (const line of out.trimEnd().split('\n')) expect(line).toMatch(/^\[(show|evil\\x1b\]0;t\\x07)\] /);
    expect(out).toContain('[show] harmless\\r[asp] all tests passed\n');
    expect(out).toContain('[show] no newline at the end\\r[fake] done\n');
  });

  it('the log: warnings carry sandbox text (file names) escaped, and later lines indented', () => {
    let out = '';
    const log = humanLog(false, (line) => (out += line));
    log.warn({}, `not copied out of the sandbox: .asp/evil${ESC}[2J\rname\nasp: error: forged (a symlink)`);
    expect(out).toBe('asp: warning: not copied out of the sandbox: .asp/evil\\x1b[2J\\rname\n  asp: error: forged (a symlink)\n');
  });

  it("the CLI's error line: one line, escaped, on stderr and in the --json result", () => {
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (written.push(String(chunk)), true));
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (written.push(String(chunk)), true));
    const code = reportFailure(new AspError('BAD_INPUT', `ref "${ESC}]52;c;aGk=\u0007\u009b" not found`, 'pass --ref a branch'), { json: true, debug: false });
    expect(code).toBe(2);
    const [line, json] = written;
    expect(line).toBe('asp: error: ref "\\x1b]52;c;aGk=\\x07\\u009b" not found — pass --ref a branch\n');
    expect(json).not.toMatch(UNSAFE);
    expect(JSON.parse(json!)).toMatchObject({ error: { message: `ref "${ESC}]52;c;aGk=\u0007\u009b" not found` } });
  });
});
