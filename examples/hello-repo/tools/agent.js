// A stand-in for the ASP agents: each phase writes the artifact the seed names into $ASP_ARTIFACTS.
// It makes no model calls, so the demo needs nothing but Docker.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const phase = process.argv[2];
const out = process.env.ASP_ARTIFACTS ?? '.asp';
const task = process.env.ASP_TASK || 'no task given';
const sources = readdirSync('src').filter((file) => file.endsWith('.js'));
const write = (name, body) => {
  writeFileSync(path.join(out, name), JSON.stringify(body, null, 2) + '\n');
  console.log(`wrote ${name}`);
};

if (phase === 'plan') {
  write('planning.json', {
    task,
    task_id: process.env.ASP_TASK_ID,
    units: sources.map((file, index) => ({ id: `unit-${index + 1}`, file: `src/${file}`, action: 'review and test' })),
    estimate: { units: sources.length },
  });
} else if (phase === 'design') {
  const planning = JSON.parse(readFileSync(path.join(out, 'planning.json'), 'utf8'));
  write('design.json', {
    task,
    components: planning.units.map((unit) => ({ unit: unit.id, file: unit.file, exports: exportsOf(unit.file) })),
  });
} else if (phase === 'review') {
  const results = JSON.parse(readFileSync(path.join(out, 'test_results.json'), 'utf8'));
  const issues = sources.flatMap((file) =>
    readFileSync(path.join('src', file), 'utf8').includes('TODO') ? [{ file, severity: 'minor', note: 'TODO left in code' }] : [],
  );
  const score = results.total ? (results.passed / results.total) * (issues.length ? 0.9 : 1) : 0;
  write('code_review.json', { task, score: Number(score.toFixed(3)), issues, tests: { passed: results.passed, total: results.total } });
} else {
  console.error(`unknown phase "${phase}": use plan, design or review`);
  process.exit(2);
}

function exportsOf(file) {
  return [...readFileSync(file, 'utf8').matchAll(/export function (\w+)/g)].map((match) => match[1]);
}
