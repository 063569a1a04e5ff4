/**
 * The seed's quality gates and retry limits of the ASP pipeline, as plain functions of the review findings.
 * Kept free of I/O so the gates are unit-tested exactly as the agents apply them.
 */
import { isRecord } from '../src/core/record-guard.js';

export const RETRY_LIMITS = { design: 3, code: 3, test: 2 } as const;

export type Severity = 'Critical' | 'High' | 'Medium' | 'Low';
export interface Finding {
  severity: Severity;
  issue: string;
  [key: string]: unknown;
}
export type GateStatus = 'pass' | 'conditional_pass' | 'fail';
export interface GateResult {
  status: GateStatus;
  counts: Record<Severity, number>;
  reason: string;
}

const SEVERITIES: Severity[] = ['Critical', 'High', 'Medium', 'Low'];

/** Findings as a model wrote them: unknown severities count as Medium, anything not an object is dropped. */
export function normalizeFindings(raw: unknown): Finding[] {
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((item) => {
    if (!isRecord(item)) return [];
    const record = item;
    const text = String(record.severity ?? '')
      .trim()
      .toLowerCase();
    const severity = SEVERITIES.find((name) => name.toLowerCase() === text) ?? 'Medium';
    return [{ ...record, severity, issue: String(record.issue ?? record.description ?? '') }];
  });
}

function countOf(findings: Finding[]): Record<Severity, number> {
  const counts: Record<Severity, number> = { Critical: 0, High: 0, Medium: 0, Low: 0 };
  for (const finding of findings) counts[finding.severity] += 1;
  return counts;
}

/** Design review: any Critical or High finding fails the design. */
export function designReviewGate(findings: Finding[]): GateResult {
  const counts = countOf(findings);
  if (counts.Critical + counts.High > 0) return { status: 'fail', counts, reason: `${counts.Critical} Critical and ${counts.High} High finding(s)` };
  return { status: 'pass', counts, reason: 'no Critical or High finding' };
}

/** Code review: a Critical or five or more High fail; one to four High pass conditionally. */
export function codeReviewGate(findings: Finding[]): GateResult {
  const counts = countOf(findings);
  if (counts.Critical > 0) return { status: 'fail', counts, reason: `${counts.Critical} Critical finding(s)` };
  if (counts.High >= 5) return { status: 'fail', counts, reason: `${counts.High} High findings (5 or more fail)` };
  if (counts.High > 0) return { status: 'conditional_pass', counts, reason: `${counts.High} High finding(s) (1 to 4 pass conditionally)` };
  return { status: 'pass', counts, reason: 'no Critical or High finding' };
}

/** The review's quality for PROBE (probe_quality_score), 0 to 1: each finding costs by its severity. */
export function qualityScore(counts: Record<Severity, number>): number {
  const penalty = counts.Critical * 0.5 + counts.High * 0.15 + counts.Medium * 0.05 + counts.Low * 0.01;
  return Math.round(Math.max(0, 1 - penalty) * 1000) / 1000;
}

/** Passed and total from a test run's output ("3/3 tests passed", node:test's "# pass 3" / "# fail 0"), else from the exit code. */
export function testCounts(output: string, exitCode: number): { passed: number; failed: number; total: number } {
  const ratio = /(\d+)\s*\/\s*(\d+)\s+tests? passed/i.exec(output);
  if (ratio) {
    const passed = Number(ratio[1]);
    const total = Number(ratio[2]);
    if (passed <= total) return { passed, failed: total - passed, total };
  }
  const pass = /^# pass (\d+)/m.exec(output);
  const fail = /^# fail (\d+)/m.exec(output);
  if (pass && fail) return { passed: Number(pass[1]), failed: Number(fail[1]), total: Number(pass[1]) + Number(fail[1]) };
  return exitCode === 0 ? { passed: 1, failed: 0, total: 1 } : { passed: 0, failed: 1, total: 1 };
}
