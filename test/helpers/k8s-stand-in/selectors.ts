import { badRequest } from './api-status.js';
import { labelKeyProblems, labelValueProblems } from './name-rules.js';

/**
 * Label selectors in both of the API's forms: the query string of a list or watch (`app=x,tier!=db,!canary,env in
 * (a,b)`) and the LabelSelector object of a NetworkPolicy (matchLabels, matchExpressions); and field selectors.
 */
type Requirement = { key: string; op: 'in' | 'notin'; values: string[] } | { key: string; op: 'exists' | 'absent' } | { key: string; op: 'equals' | 'differs'; value: string };

export type Labels = Record<string, string>;

export function parseLabelSelector(text: string | undefined): (labels: Labels) => boolean {
  const requirements = splitTerms(text ?? '').map(parseRequirement);
  return (labels) => requirements.every((requirement) => holds(requirement, labels));
}

/** NetworkPolicy's podSelector: an empty selector selects every pod. */
export interface SelectorObject {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

export function selectorMatches(selector: SelectorObject | undefined, labels: Labels): boolean {
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {})) if (labels[key] !== value) return false;
  for (const expression of selector?.matchExpressions ?? []) {
    const present = Object.hasOwn(labels, expression.key);
    const values = expression.values ?? [];
    const value = labels[expression.key];
    switch (expression.operator) {
      case 'In':
        if (!present || value === undefined || !values.includes(value)) return false;
        break;
      case 'NotIn':
        if (present && value !== undefined && values.includes(value)) return false;
        break;
      case 'Exists':
        if (!present) return false;
        break;
      case 'DoesNotExist':
        if (present) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

/** Field selectors: `field=value`, `field==value`, `field!=value`, comma-joined, over the fields the resource allows. */
export function parseFieldSelector(text: string | undefined, fields: Record<string, (object: unknown) => string | undefined>): (object: unknown) => boolean {
  const terms = splitTerms(text ?? '').map((term) => {
    const match = /^([^=!]+)(==|=|!=)(.*)$/.exec(term);
    if (!match) throw badRequest(`invalid selector: '${text}'; can't understand '${term}'`);
    const [, field = '', op, value = ''] = match;
    const read = fields[field.trim()];
    if (!read) throw badRequest(`field label not supported: ${field.trim()}`);
    return { read, differs: op === '!=', value: value.trim() };
  });
  return (object) => terms.every((term) => (read(term.read, object) === term.value) !== term.differs);
}

function read(reader: (object: unknown) => string | undefined, object: unknown): string {
  return reader(object) ?? '';
}

/** Splits on the commas that separate requirements, not those inside `in (a,b)`. */
function splitTerms(text: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let current = '';
  for (const character of text) {
    if (character === '(') depth += 1;
    if (character === ')') depth -= 1;
    if (character === ',' && depth === 0) {
      terms.push(current);
      current = '';
    } else current += character;
  }
  terms.push(current);
  return terms.map((term) => term.trim()).filter((term) => term !== '');
}

function parseRequirement(term: string): Requirement {
  let requirement: Requirement;
  const set = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(term);
  const comparison = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
  if (set) {
    const [, key = '', op, values = ''] = set;
    requirement = { key, op: op === 'in' ? 'in' : 'notin', values: values.split(',').map((value) => value.trim()) };
  } else if (comparison) {
    const [, key = '', op, value = ''] = comparison;
    requirement = { key, op: op === '!=' ? 'differs' : 'equals', value };
  } else if (/^!\s*\S+$/.test(term)) requirement = { key: term.slice(1).trim(), op: 'absent' };
  else if (/^\S+$/.test(term)) requirement = { key: term, op: 'exists' };
  else throw badRequest(`unable to parse requirement: found '${term}', expected: in, notin, =, ==, !=, gt, lt`);
  const keyProblems = labelKeyProblems(requirement.key);
  if (keyProblems.length) throw badRequest(`unable to parse requirement: key: Invalid value: "${requirement.key}": ${keyProblems.join('; ')}`);
  const values = 'values' in requirement ? requirement.values : 'value' in requirement ? [requirement.value] : [];
  for (const [index, value] of values.entries()) {
    const problems = labelValueProblems(value);
    if (problems.length) throw badRequest(`unable to parse requirement: values[${index}][${requirement.key}]: Invalid value: "${value}": ${problems.join('; ')}`);
  }
  return requirement;
}

function holds(requirement: Requirement, labels: Labels): boolean {
  const present = Object.hasOwn(labels, requirement.key);
  const value = labels[requirement.key];
  switch (requirement.op) {
    case 'exists':
      return present;
    case 'absent':
      return !present;
    case 'equals':
      return present && value === requirement.value;
    case 'differs':
      return !present || value !== requirement.value;
    case 'in':
      return present && value !== undefined && requirement.values.includes(value);
    case 'notin':
      return !present || value === undefined || !requirement.values.includes(value);
  }
}
