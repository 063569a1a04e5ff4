import { describe, expect, it } from 'vitest';
import { codeReviewGate, designReviewGate, normalizeFindings, qualityScore, RETRY_LIMITS, testCounts } from '../../sandbox/asp-gates.js';
import { extractJson } from '../../sandbox/asp-chat.js';
import { safeRepoPath } from '../../sandbox/asp-repo.js';
import { aspPipelineSteps } from '../../src/config/asp-pipeline.js';

const findings = (...severities: string[]) => normalizeFindings(severities.map((severity, index) => ({ severity, issue: `issue ${index}` })));

describe('ASP gates', () => {
  it('fails a design on any Critical or High finding', () => {
    expect(designReviewGate(findings('Medium', 'Low')).status).toBe('pass');
    expect(designReviewGate(findings('High')).status).toBe('fail');
    expect(designReviewGate(findings('critical')).status).toBe('fail');
  });

  it('fails code on a Critical or five High, passes it conditionally on one to four High', () => {
    expect(codeReviewGate(findings('Medium')).status).toBe('pass');
    expect(codeReviewGate(findings('High')).status).toBe('conditional_pass');
    expect(codeReviewGate(findings('High', 'High', 'High', 'High')).status).toBe('conditional_pass');
    expect(codeReviewGate(findings('High', 'High', 'High', 'High', 'High')).status).toBe('fail');
    expect(codeReviewGate(findings('Critical')).status).toBe('fail');
  });

  it('keeps the seed retry limits and scores review quality', () => {
    expect(RETRY_LIMITS).toEqual({ design: 3, code: 3, test: 2 });
    expect(qualityScore({ Critical: 0, High: 2, Medium: 0, Low: 0 })).toBe(0.7);
    expect(qualityScore({ Critical: 3, High: 0, Medium: 0, Low: 0 })).toBe(0);
  });

  it('reads test counts from common runner output', () => {
    expect(testCounts('3/3 tests passed', 0)).toEqual({ passed: 3, failed: 0, total: 3 });
    expect(testCounts('# pass 4\n# fail 1\n', 1)).toEqual({ passed: 4, failed: 1, total: 5 });
    expect(testCounts('whatever', 2)).toEqual({ passed: 0, failed: 1, total: 1 });
  });

  it('takes JSON out of a fenced or chatty answer', () => {
    expect(extractJson('Here:\n```json\n{"a":1}\n```')).toEqual({ a: 1 });
    expect(extractJson('sure! {"b":2} hope that helps')).toEqual({ b: 2 });
    expect(extractJson('no json here')).toBeUndefined();
  });

  it('lets the code agent write only inside the repository', () => {
    expect(safeRepoPath('/repo', 'src/a.js')).toBe('/repo/src/a.js');
    for (const bad of ['../etc/passwd', '/etc/passwd', '.git/config', 'src/../../x', '']) expect(safeRepoPath('/repo', bad)).toBeUndefined();
  });

  it('names its steps apart from the artifacts the agents write', () => {
    const names = aspPipelineSteps().map((step) => step.name);
    expect(names).toEqual(['planning_agent', 'design_agent', 'design_review_agent', 'code_agent', 'code_review_agent', 'test_agent', 'postmortem_agent']);
  });
});
