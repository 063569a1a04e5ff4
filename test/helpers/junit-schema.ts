import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const XSD = path.resolve(import.meta.dirname, '..', 'fixtures', 'test-reports', 'junit-surefire.xsd');

/** JUnit XML checked by libxml2 against Surefire's shape (test/fixtures/test-reports/junit-surefire.xsd). */
export function validateAgainstSurefire(xml: string): { ok: boolean; output: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-junit-xsd-'));
  const file = path.join(dir, 'junit.xml');
  writeFileSync(file, xml);
  const run = spawnSync('xmllint', ['--noout', '--nonet', '--schema', XSD, file], { encoding: 'utf8' });
  // No xmllint is a failure, never a skip: .ci/run installs libxml2-utils.
  if (run.error) throw new Error(`xmllint is needed to validate JUnit (apt-get install libxml2-utils): ${run.error.message}`);
  return { ok: run.status === 0, output: `${run.stdout}${run.stderr}` };
}
