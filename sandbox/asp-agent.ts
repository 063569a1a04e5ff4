/**
 * asp-agent <agent>: one step of the built-in ASP pipeline (Planning → Design → Design Review → Code → Code Review
 * → Test → Postmortem). Each agent reads its prompt from /opt/asp/prompts/asp/<agent>.md, asks the model through
 * the sandbox's endpoint, and writes its artifact to .asp/. The review and test steps own the seed's gates and
 * retry limits: a failed gate sends the work back to the design or code agent, up to RETRY_LIMITS attempts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chatJson, type ChatMessage } from './asp-chat.js';
import { codeReviewGate, designReviewGate, normalizeFindings, qualityScore, RETRY_LIMITS, testCounts, type Finding } from './asp-gates.js';
import { isRecord, valueAt } from '../src/core/record-guard.js';
import { applyFiles, repoContext, repoDiff } from './asp-repo.js';

const REPO = process.cwd();
const ARTIFACTS = process.env.ASP_ARTIFACTS ?? '/workspace/.asp';
const TASK = process.env.ASP_TASK ?? '';
const PROMPTS = process.env.ASP_PROMPTS ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'prompts', 'asp');
const TEST_TIMEOUT_MS = 10 * 60_000;
const OUTPUT_TAIL = 8 * 1024;

type Json = Record<string, unknown>;

function prompt(agent: string): string {
  return readFileSync(path.join(PROMPTS, `${agent}.md`), 'utf8');
}

function readArtifact(name: string): Json | undefined {
  const file = path.join(ARTIFACTS, name);
  if (!existsSync(file)) return undefined;
  // Steps can write here too: what is read back is checked to be an object before a field of it is read.
  const value: unknown = JSON.parse(readFileSync(file, 'utf8'));
  return isRecord(value) ? value : undefined;
}

function writeArtifact(name: string, value: Json): void {
  writeFileSync(path.join(ARTIFACTS, name), JSON.stringify(value, null, 2) + '\n');
}

function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

async function ask(agent: string, sections: Array<[string, unknown]>): Promise<Json> {
  const user = sections
    .filter(([, value]) => value !== undefined)
    .map(([title, value]) => `## ${title}\n${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}`)
    .join('\n\n');
  const messages: ChatMessage[] = [
    { role: 'system', content: prompt(agent) },
    { role: 'user', content: user },
  ];
  // Named like the agent's own step (`design_agent`), also when another step runs it (a redesign in design review).
  return chatJson(messages, `${agent}_agent`);
}

async function planning(): Promise<number> {
  const plan = await ask('planning', [
    ['Task', TASK],
    ['Repository', repoContext(REPO)],
  ]);
  const complexity = Math.min(100, Math.max(1, Math.round(Number(plan.complexity) || 1)));
  writeArtifact('planning.json', { ...plan, complexity, task: TASK });
  log(`planning: ${Array.isArray(plan.units) ? plan.units.length : 0} unit(s), complexity ${complexity}`);
  return 0;
}

async function designOnce(attempt: number, findings: Finding[] | undefined): Promise<Json> {
  const design = await ask('design', [
    ['Task', TASK],
    ['Plan', readArtifact('planning.json')],
    ['Repository', repoContext(REPO)],
    ...(findings ? ([['Findings of the design review to fix', findings]] as Array<[string, unknown]>) : []),
  ]);
  writeArtifact('design.json', { ...design, attempt });
  log(`design: attempt ${attempt}`);
  return design;
}

async function design(): Promise<number> {
  await designOnce(1, undefined);
  return 0;
}

async function designReview(): Promise<number> {
  const history: Json[] = [];
  for (let attempt = 1; ; attempt += 1) {
    const review = await ask('design_review', [
      ['Task', TASK],
      ['Plan', readArtifact('planning.json')],
      ['Design', readArtifact('design.json')],
    ]);
    const findings = normalizeFindings(review.findings);
    const gate = designReviewGate(findings);
    history.push({ attempt, status: gate.status, counts: gate.counts });
    writeArtifact('design_review.json', { ...review, findings, gate, designAttempts: attempt, history });
    log(`design review ${attempt}/${RETRY_LIMITS.design}: ${gate.status} (${gate.reason})`);
    if (gate.status !== 'fail') return 0;
    if (attempt >= RETRY_LIMITS.design) {
      log(`design review: the design failed ${attempt} times; giving up`);
      return 1;
    }
    await designOnce(attempt + 1, findings);
  }
}

async function codeOnce(attempt: number, feedback: [string, unknown] | undefined): Promise<void> {
  const designJson = readArtifact('design.json');
  const changes = designJson?.changes;
  const touched = Array.isArray(changes) ? changes.map((change: unknown) => String(valueAt(change, 'file') ?? '')) : [];
  const answer = await ask('code', [['Task', TASK], ['Design', designJson], ['Repository', repoContext(REPO, touched)], ...(feedback ? [feedback] : [])]);
  const { written, refused } = applyFiles(REPO, answer.files);
  const previous = readArtifact('code_manifest.json');
  const previousAttempts: unknown[] = Array.isArray(previous?.previousAttempts) ? previous.previousAttempts : [];
  writeArtifact('code_manifest.json', {
    summary: answer.summary ?? '',
    files: written,
    ...(refused.length ? { refused } : {}),
    attempt,
    ...(previous ? { previousAttempts: [...previousAttempts, { attempt: previous.attempt, files: previous.files }] } : {}),
  });
  log(`code: attempt ${attempt}, ${written.length} file(s) written${refused.length ? `, ${refused.length} refused (outside the repository)` : ''}`);
}

async function code(): Promise<number> {
  await codeOnce(1, undefined);
  return 0;
}

async function codeReview(): Promise<number> {
  const history: Json[] = [];
  for (let attempt = 1; ; attempt += 1) {
    const review = await ask('code_review', [
      ['Task', TASK],
      ['Design', readArtifact('design.json')],
      ['Change (unified diff)', repoDiff(REPO) || '(no change)'],
    ]);
    const findings = normalizeFindings(review.findings);
    const gate = codeReviewGate(findings);
    history.push({ attempt, status: gate.status, counts: gate.counts });
    writeArtifact('code_review.json', { ...review, findings, gate, status: gate.status, score: qualityScore(gate.counts), codeAttempts: attempt, history });
    log(`code review ${attempt}/${RETRY_LIMITS.code}: ${gate.status} (${gate.reason})`);
    if (gate.status !== 'fail') return 0;
    if (attempt >= RETRY_LIMITS.code) {
      log(`code review: the code failed ${attempt} times; giving up`);
      return 1;
    }
    await codeOnce(attempt + 1, ['Findings of the code review to fix', findings]);
  }
}

async function test(): Promise<number> {
  const choice = await ask('test', [
    ['Task', TASK],
    ['Design', readArtifact('design.json')],
    ['Repository', repoContext(REPO)],
  ]);
  const command = typeof choice.command === 'string' && choice.command.trim() ? choice.command.trim() : 'npm test';
  const runs: Json[] = [];
  for (let attempt = 1; ; attempt += 1) {
    log(`test ${attempt}/${RETRY_LIMITS.test}: ${command}`);
    const result = spawnSync('/bin/bash', ['-c', command], { cwd: REPO, encoding: 'utf8', timeout: TEST_TIMEOUT_MS, maxBuffer: 32 * 1024 * 1024, env: process.env });
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
    process.stdout.write(output.slice(-OUTPUT_TAIL));
    const exitCode = result.status ?? 1;
    const counts = testCounts(output, exitCode);
    const passed = exitCode === 0 && counts.failed === 0;
    runs.push({ attempt, exitCode, ...counts });
    writeArtifact('test_results.json', { command, exitCode, ...counts, status: passed ? 'passed' : 'failed', testAttempts: attempt, runs, outputTail: output.slice(-OUTPUT_TAIL) });
    if (passed) return 0;
    if (attempt >= RETRY_LIMITS.test) {
      log(`test: still failing after ${attempt} attempts; giving up`);
      return 1;
    }
    await codeOnce(Number(readArtifact('code_manifest.json')?.attempt ?? 1) + 1, ['The tests failed; fix the code. Test output (tail)', output.slice(-OUTPUT_TAIL)]);
  }
}

async function postmortem(): Promise<number> {
  const artifacts = Object.fromEntries(['planning.json', 'design.json', 'design_review.json', 'code_manifest.json', 'code_review.json', 'test_results.json'].map((name) => [name, readArtifact(name)]));
  const answer = await ask('postmortem', [
    ['Task', TASK],
    ['Artifacts', artifacts],
  ]);
  const attempts = {
    design: artifacts['design_review.json']?.designAttempts ?? null,
    code: artifacts['code_review.json']?.codeAttempts ?? null,
    test: artifacts['test_results.json']?.testAttempts ?? null,
  };
  writeArtifact('postmortem.json', { ...answer, attempts, complexity: artifacts['planning.json']?.complexity ?? null });
  log('postmortem written');
  return 0;
}

const AGENTS: Record<string, () => Promise<number>> = {
  planning,
  design,
  design_review: designReview,
  code,
  code_review: codeReview,
  test,
  postmortem,
};

const agent = process.argv[2] ?? '';
const run = AGENTS[agent];
if (!run) {
  process.stderr.write(`asp-agent: unknown agent "${agent}"; one of ${Object.keys(AGENTS).join(', ')}\n`);
  process.exitCode = 2;
} else {
  run().then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      process.stderr.write(`asp-agent ${agent}: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
