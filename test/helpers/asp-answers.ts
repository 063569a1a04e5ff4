import type { FakeAnswer, FakeRequest } from './fake-openai.js';

/** The agent a request is for, from the marker on the first line of every ASP prompt. */
export function agentOf(request: Pick<FakeRequest, 'body'>): string {
  const messages = Array.isArray(request.body.messages) ? (request.body.messages as Array<{ role?: string; content?: unknown }>) : [];
  const system = messages.find((message) => message.role === 'system')?.content;
  return /ASP-AGENT: (\w+)/.exec(typeof system === 'string' ? system : '')?.[1] ?? 'unknown';
}

export const GREET_WITH_GREET_ALL = `/** Greets someone by name; the demo's whole library. */
export function greet(name) {
  const who = typeof name === 'string' && name.trim() ? name.trim() : 'world';
  return \`Hello, \${who}!\`;
}

/** Greets everyone in a list, one line each. */
export function greetAll(names) {
  return (Array.isArray(names) ? names : []).map((name) => greet(name)).join('\\n');
}
`;

export interface AspScenario {
  /** How many design reviews find a High problem before one passes. */
  designFailures?: number;
  /** How many code reviews find five High problems before one passes. */
  codeFailures?: number;
  /** High findings of the code review that finally passes (1 to 4: a conditional pass). */
  codeHighs?: number;
}

/** Deterministic answers of each ASP agent for the hello-repo example, shaped by a scenario. */
export function aspAnswers(scenario: AspScenario = {}): (request: FakeRequest) => FakeAnswer {
  const seen: Record<string, number> = {};
  return (request) => {
    const agent = agentOf(request);
    const count = (seen[agent] = (seen[agent] ?? 0) + 1);
    const json = (value: unknown): FakeAnswer => ({ content: '```json\n' + JSON.stringify(value, null, 2) + '\n```', usage: { prompt_tokens: 100, completion_tokens: 50 } });
    const high = (n: number) => Array.from({ length: n }, (_, index) => ({ severity: 'High', issue: `problem ${index + 1}`, fix: 'fix it' }));
    switch (agent) {
      case 'planning':
        return json({ task_summary: 'add greetAll', units: [{ id: 'U1', description: 'add greetAll to src/greet.js', files: ['src/greet.js'], estimated_complexity: 3 }], complexity: 7, risks: [] });
      case 'design':
        return json({ overview: 'a greetAll function built on greet', changes: [{ file: 'src/greet.js', change: 'add greetAll(names)' }], tests: ['existing tests still pass'] });
      case 'design_review':
        return json({ findings: count <= (scenario.designFailures ?? 0) ? high(1) : [{ severity: 'Low', issue: 'naming' }], summary: 'reviewed' });
      case 'code':
        return json({ files: [{ path: 'src/greet.js', content: GREET_WITH_GREET_ALL }], summary: 'added greetAll' });
      case 'code_review':
        return json({ findings: count <= (scenario.codeFailures ?? 0) ? high(5) : high(scenario.codeHighs ?? 0), summary: 'reviewed' });
      case 'test':
        return json({ command: 'node tools/run-tests.js', reason: 'the package test script' });
      case 'postmortem':
        return json({ went_well: ['small change'], went_wrong: [], lessons: ['keep it small'] });
      default:
        return { status: 400, body: { error: { message: `unknown agent ${agent}` } } };
    }
  };
}
