/**
 * Text from a sandbox or a repository (step output, file names, warnings, errors) is made safe to print before it
 * reaches a terminal or a log line: a terminal obeys control characters, so raw output could set the window title
 * (OSC 0), write the user's clipboard (OSC 52), clear the screen (CSI 2J), or with `\r` overwrite the `[step] `
 * prefix and pass itself off as asp's own line. Every C0 control but `\t` and `\n`, DEL and the C1 controls
 * (U+0080..U+009F; U+009B is a one-character CSI to some terminals) are replaced by visible text.
 *
 * DEL, C1 and the bidi controls become `\uXXXX`, which is also a valid JSON escape of the same character:
 * JSON.stringify leaves those raw, so printable(JSON text) is still JSON with the same value. (It escapes every C0
 * control itself.)
 * Only what is printed is escaped; events.jsonl and the trace keep the raw bytes.
 */

// Tab (\x09) and line feed (\x0a) are left alone; everything else below space, DEL and C1 are not. Nor are the
// bidirectional embedding, override and isolate controls (U+202A..U+202E, U+2066..U+2069): they reorder what a
// terminal shows ("Trojan Source", CVE-2021-42574), so a file name could read as another.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');
const UNSAFE_LINE_ALL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function escape(char: string): string {
  const code = char.charCodeAt(0);
  if (char === '\r') return '\\r';
  if (char === '\n') return '\\n';
  const hex = code.toString(16).padStart(2, '0');
  return code < 0x20 ? `\\x${hex}` : `\\u${hex.padStart(4, '0')}`;
}

/** The text with every control character but `\t` and `\n` shown as an escape (`\x1b`, `\r`, `\u009b`). */
export function printable(text: string): string {
  // Most output has nothing to escape: test once instead of building a new string for every chunk.
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escape) : text;
}

/** As printable, and `\n` too: for what must stay on one line (an error, a warning, a file name). */
export function printableLine(text: string): string {
  return text.replace(UNSAFE_LINE_ALL, escape);
}

/**
 * As printable, with every line after the first indented: a message of several lines (a list of bad task lines)
 * stays readable, and no line of it can pass for one of asp's own `asp: ...` lines.
 */
export function printableLines(text: string, indent = '  '): string {
  return printable(text).replace(/\n(?=.)/g, `\n${indent}`);
}
