import type { Step } from './task-spec.js';

/** `--pipeline asp`: the built-in ASP pipeline instead of a pipeline file. */
export const ASP_PIPELINE = 'asp';

/**
 * The seven agents of the seed, one step each, run by `asp-agent` in the sandbox image. Design review and code
 * review retry the design and the code themselves (3 attempts each), test retries the code (2 attempts).
 */
export const ASP_AGENTS = ['planning', 'design', 'design_review', 'code', 'code_review', 'test', 'postmortem'] as const;

/**
 * Steps are named `<agent>_agent`, the seed's span names: the runner writes `.asp/<step>.json` for every step, and
 * a step called `code_review` would overwrite the code review agent's own code_review.json.
 */
export function aspPipelineSteps(): Step[] {
  return ASP_AGENTS.map((agent) => ({ name: `${agent}_agent`, run: `asp-agent ${agent}`, artifact: AGENT_ARTIFACTS[agent] }));
}

/** What each agent writes into `.asp/` (sandbox/asp-agent.ts): its span's output in the trace. */
const AGENT_ARTIFACTS: Record<(typeof ASP_AGENTS)[number], string> = {
  planning: 'planning.json',
  design: 'design.json',
  design_review: 'design_review.json',
  code: 'code_manifest.json',
  code_review: 'code_review.json',
  test: 'test_results.json',
  postmortem: 'postmortem.json',
};
