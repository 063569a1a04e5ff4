import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, describe, expect, it } from 'vitest';
import { asp } from '../helpers/cli.js';
import { dockerAvailable, leftovers } from '../helpers/docker.js';
import { repoWith } from '../helpers/repos.js';

describe.skipIf(!dockerAvailable)('asp batch --resume of a finished batch, against the real Docker engine', () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('says the tasks came from the journal, gives no rate of work it did not do, and keeps their time in the JUnit suite', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-resume-times-'));
    const env = { ASP_HOME: path.join(dir, 'home'), ASP_WORKSPACES: path.join(dir, 'ws'), CI: 'true' };
    const repo = repoWith({ 'README.md': 'times\n' });
    const file = path.join(dir, 'tasks.jsonl');
    writeFileSync(file, ['one', 'two'].map((id) => JSON.stringify({ id: `nap-${id}`, repo, steps: [{ name: 'nap', run: 'sleep 1.5' }] })).join('\n') + '\n');
    const first = await asp(['batch', file, '--concurrency', '2'], env);
    expect(first.code, first.stderr).toBe(0);

    const junit = path.join(dir, 'resumed.xml');
    const resumed = await asp(['batch', file, '--resume', '--junit', junit], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    const lines = resumed.stderr.split('\n').filter((line) => line.startsWith('asp batch:'));
    expect(lines).toContain('asp batch: 2/2 done (2 from journal), 0 running, 0 failed, 0.0/min, ETA ?');
    expect(lines.at(-1)).toMatch(/^asp batch: 2 passed, 0 failed, 0 errors, 0 not finished of 2 in \S+; 2 of them from the journal, not run again \(they took \S+ before\) \(concurrency/);

    const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' }).parse(readFileSync(junit, 'utf8'));
    const suite = xml.testsuites.testsuite;
    // Side by side, each of 1.5 s and more: the suite is their time, not the few milliseconds of a --resume.
    expect(Number(suite.time)).toBeGreaterThanOrEqual(1.5);
    expect(Number(xml.testsuites.time)).toBeGreaterThanOrEqual(1.5);
    for (const testcase of suite.testcase) expect(Number(testcase.time)).toBeGreaterThanOrEqual(1.5);
  }, 180_000);
});
