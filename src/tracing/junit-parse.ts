/**
 * The JUnit XML a step wrote, read as untrusted input: a small scanner for the subset test runners write
 * (elements, attributes, text, CDATA, comments, the five predefined entities and character references), nothing
 * else. A DOCTYPE or ENTITY declaration is refused outright, so no entity is ever expanded ("billion laughs"), and
 * every count the file controls is capped: nesting depth, elements, testcases, the length of what is kept.
 */
import type { TestCaseResult } from './test-results.js';

export const JUNIT_LIMITS = {
  /** Deeper than any runner nests suites: a file past this is built to exhaust a parser. */
  depth: 32,
  elements: 200_000,
  testcases: 10_000,
  /** Of a name, classname or failure message. */
  attribute: 1024,
  /** Of a failure's body (its stack trace): the tail of the output says the rest. */
  detail: 4096,
  /** Of one element: runners write a handful; thousands are only there to make the scanner work. */
  attributes: 64,
} as const;

export class TestReportError extends Error {}

const NAME_START = /[A-Za-z_:]/;
const NAME_CHAR = /[-A-Za-z0-9_:.]/;
const PREDEFINED = new Map([
  ['lt', '<'],
  ['gt', '>'],
  ['amp', '&'],
  ['quot', '"'],
  ['apos', "'"],
]);
/** The only attributes read: the others are checked for shape but never decoded or kept. */
const KEPT_ATTRIBUTES = ['name', 'classname', 'time', 'message', 'type'] as const;

type Attrs = Partial<Record<(typeof KEPT_ATTRIBUTES)[number], string>>;
const keptAttribute = (name: string) => KEPT_ATTRIBUTES.find((kept) => kept === name);

interface Open {
  name: string;
  attrs: Attrs;
}

/**
 * A copy of `text` that shares no memory with the file's text. V8 keeps a slice (or a concatenation of slices) of a
 * string as a pointer into its parent, so one kept 20-character name would pin the whole 8 MiB (16 MiB as UTF-16)
 * file for as long as a batch holds the name. A round trip through UTF-8 bytes makes a new flat string.
 */
export const detached = (text: string): string => (text ? Buffer.from(text, 'utf8').toString('utf8') : '');

/** Decodes entity and character references; any other reference is an error (nothing else is declared). */
function decode(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(/&([^;&\s]{0,10});?/g, (whole, ref: string) => {
    if (!whole.endsWith(';')) throw new TestReportError('a bare & in text');
    const predefined = PREDEFINED.get(ref);
    if (predefined !== undefined) return predefined;
    const code = ref.startsWith('#x') ? Number.parseInt(ref.slice(2), 16) : ref.startsWith('#') ? Number.parseInt(ref.slice(1), 10) : Number.NaN;
    if (!Number.isInteger(code) || code < 1 || code > 0x10ffff) throw new TestReportError(`unknown entity &${ref.slice(0, 10)};`);
    return String.fromCodePoint(code);
  });
}

/**
 * The start of raw text that decodes to at least `chars` characters (a reference is at most 12 long), cut before a
 * reference it would split: what is kept is decoded, never the megabytes after it.
 */
const head = (raw: string, chars: number) => (raw.length <= chars * 12 ? raw : raw.slice(0, chars * 12).replace(/&[^;]{0,11}$/, ''));

const cut = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/**
 * The testcases of a JUnit file (testsuites > testsuite (nested or not) > testcase > failure | error | skipped).
 * `suite` of each is the innermost testsuite's name; a testcase with no failure, error or skipped child passed.
 */
export function parseJunit(text: string): TestCaseResult[] {
  const cases: TestCaseResult[] = [];
  const stack: Open[] = [];
  let current: TestCaseResult | undefined;
  /** The text of a failure, error or skipped element being read (a testcase's child), capped. */
  let detail: string[] | undefined;
  let detailLength = 0;
  let elements = 0;
  let root = false;
  let pos = 0;
  const length = text.length;

  const attrsOf = (end: number, start: number): Attrs => {
    const attrs: Attrs = {};
    let at = start;
    let count = 0;
    while (at < end) {
      while (at < end && /\s/.test(text[at] ?? '')) at++;
      if (at >= end) break;
      if (++count > JUNIT_LIMITS.attributes) throw new TestReportError(`more than ${JUNIT_LIMITS.attributes} attributes on one element`);
      const nameStart = at;
      if (!NAME_START.test(text[at] ?? '')) throw new TestReportError(`bad attribute at offset ${at}`);
      while (at < end && NAME_CHAR.test(text[at] ?? '')) at++;
      const name = text.slice(nameStart, at);
      while (at < end && /\s/.test(text[at] ?? '')) at++;
      if (text[at] !== '=') throw new TestReportError(`attribute ${cut(name, 40)} has no value`);
      at++;
      while (at < end && /\s/.test(text[at] ?? '')) at++;
      const quote = text[at];
      if (quote !== '"' && quote !== "'") throw new TestReportError(`attribute ${cut(name, 40)} is not quoted`);
      const close = text.indexOf(quote, at + 1);
      if (close < 0 || close > end) throw new TestReportError(`attribute ${cut(name, 40)} is not closed`);
      const raw = text.slice(at + 1, close);
      if (raw.includes('<')) throw new TestReportError(`a < in attribute ${cut(name, 40)}`);
      const kept = keptAttribute(name);
      if (kept) attrs[kept] = detached(cut(decode(head(raw, JUNIT_LIMITS.attribute + 1)), JUNIT_LIMITS.attribute));
      at = close + 1;
    }
    return attrs;
  };

  const addText = (raw: string) => {
    if (!detail || detailLength >= JUNIT_LIMITS.detail) return;
    const piece = raw.slice(0, JUNIT_LIMITS.detail - detailLength);
    detail.push(piece);
    detailLength += piece.length;
  };

  const openElement = (name: string, attrs: Attrs) => {
    if (++elements > JUNIT_LIMITS.elements) throw new TestReportError(`more than ${JUNIT_LIMITS.elements} elements`);
    if (stack.length >= JUNIT_LIMITS.depth) throw new TestReportError(`nested deeper than ${JUNIT_LIMITS.depth}`);
    if (stack.length === 0) {
      if (root) throw new TestReportError('more than one root element');
      if (name !== 'testsuites' && name !== 'testsuite') throw new TestReportError(`the root element is <${cut(name, 40)}>, not <testsuites> or <testsuite>`);
      root = true;
    }
    const parent = stack[stack.length - 1]?.name;
    if (name === 'testcase' && parent !== 'testcase') {
      if (cases.length >= JUNIT_LIMITS.testcases) throw new TestReportError(`more than ${JUNIT_LIMITS.testcases} testcases`);
      const suite = [...stack].reverse().find((entry) => entry.name === 'testsuite')?.attrs.name ?? '';
      const time = Number(attrs.time);
      current = { suite, classname: attrs.classname ?? '', name: attrs.name ?? '', status: 'passed', timeSec: Number.isFinite(time) && time >= 0 ? time : null };
      cases.push(current);
    } else if (current && parent === 'testcase' && (name === 'failure' || name === 'error' || name === 'skipped')) {
      // A testcase with several outcomes keeps the worst: a failure or error over a skip.
      if (current.status === 'passed' || current.status === 'skipped') {
        current.status = name === 'failure' ? 'failed' : name === 'error' ? 'error' : 'skipped';
        if (attrs.message !== undefined) current.message = attrs.message;
        if (attrs.type !== undefined) current.type = attrs.type;
        detail = [];
        detailLength = 0;
      }
    }
    stack.push({ name, attrs });
  };

  const closeElement = (name: string) => {
    const top = stack.pop();
    if (!top || top.name !== name) throw new TestReportError(`</${cut(name, 40)}> does not close <${cut(top?.name ?? '(nothing)', 40)}>`);
    if (detail && (name === 'failure' || name === 'error' || name === 'skipped') && stack[stack.length - 1]?.name === 'testcase') {
      const body = detail.join('').trim();
      if (current && body) current.detail = detached(cut(body, JUNIT_LIMITS.detail));
      detail = undefined;
    }
    if (name === 'testcase' && !stack.some((entry) => entry.name === 'testcase')) current = undefined;
  };

  while (pos < length) {
    const lt = text.indexOf('<', pos);
    const textEnd = lt < 0 ? length : lt;
    if (textEnd > pos) {
      const raw = text.slice(pos, textEnd);
      if (stack.length === 0) {
        if (raw.trim()) throw new TestReportError('text outside the root element');
      } else if (detail && detailLength < JUNIT_LIMITS.detail) addText(decode(head(raw, JUNIT_LIMITS.detail - detailLength)));
    }
    if (lt < 0) break;
    if (text.startsWith('<!--', lt)) {
      const end = text.indexOf('-->', lt + 4);
      if (end < 0) throw new TestReportError('a comment is not closed');
      pos = end + 3;
    } else if (text.startsWith('<![CDATA[', lt)) {
      const end = text.indexOf(']]>', lt + 9);
      if (end < 0) throw new TestReportError('a CDATA section is not closed');
      if (stack.length === 0) throw new TestReportError('CDATA outside the root element');
      addText(text.slice(lt + 9, end));
      pos = end + 3;
    } else if (text.startsWith('<?', lt)) {
      const end = text.indexOf('?>', lt + 2);
      if (end < 0) throw new TestReportError('a processing instruction is not closed');
      pos = end + 2;
    } else if (text.startsWith('<!', lt)) {
      // Where entities would be declared: refused before anything of it is read, so none is ever expanded.
      const what = /^<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)/i.exec(text.slice(lt, lt + 10))?.[1]?.toUpperCase() ?? 'markup';
      throw new TestReportError(`has a ${what} declaration (refused: nothing in a test report needs one)`);
    } else if (text[lt + 1] === '/') {
      const end = text.indexOf('>', lt);
      if (end < 0) throw new TestReportError('a closing tag is not closed');
      closeElement(text.slice(lt + 2, end).trim());
      pos = end + 1;
    } else {
      let at = lt + 1;
      if (!NAME_START.test(text[at] ?? '')) throw new TestReportError(`a < that starts no element at offset ${lt}`);
      while (at < length && NAME_CHAR.test(text[at] ?? '')) at++;
      const name = text.slice(lt + 1, at);
      // The tag's end: the first > outside quotes.
      let end = at;
      let quote: string | undefined;
      for (; end < length; end++) {
        const char = text[end];
        if (quote) {
          if (char === quote) quote = undefined;
        } else if (char === '"' || char === "'") quote = char;
        else if (char === '>') break;
      }
      if (end >= length) throw new TestReportError(`<${cut(name, 40)}> is not closed`);
      const selfClosing = text[end - 1] === '/' && !quote;
      const attrs = attrsOf(selfClosing ? end - 1 : end, at);
      openElement(name, attrs);
      if (selfClosing) closeElement(name);
      pos = end + 1;
    }
  }
  if (stack.length) throw new TestReportError(`<${cut(stack[stack.length - 1]?.name ?? '', 40)}> is never closed (the file is cut short?)`);
  if (!root) throw new TestReportError('has no <testsuites> or <testsuite>');
  return cases;
}
