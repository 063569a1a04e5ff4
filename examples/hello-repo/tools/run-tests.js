// Runs the tests with node:test and, inside asp, writes the seed's test_results.json.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { run } from 'node:test';

const results = { passed: 0, failed: 0, total: 0, tests: [] };
const stream = run({ files: [path.resolve('test/greet.test.js')] });
stream.on('test:pass', (event) => {
  if (event.details?.type === 'suite') return;
  results.passed += 1;
  results.tests.push({ name: event.name, status: 'passed', durationMs: event.details?.duration_ms ?? null });
  console.log(`ok   ${event.name}`);
});
stream.on('test:fail', (event) => {
  if (event.details?.type === 'suite') return;
  results.failed += 1;
  results.tests.push({ name: event.name, status: 'failed', error: String(event.details?.error?.message ?? '') });
  console.log(`FAIL ${event.name}: ${event.details?.error?.message ?? ''}`);
});
stream.on('end', () => {
  results.total = results.passed + results.failed;
  console.log(`${results.passed}/${results.total} tests passed`);
  if (process.env.ASP_ARTIFACTS) {
    writeFileSync(path.join(process.env.ASP_ARTIFACTS, 'test_results.json'), JSON.stringify(results, null, 2) + '\n');
  }
  process.exitCode = results.failed > 0 || results.total === 0 ? 1 : 0;
});
stream.resume?.();
