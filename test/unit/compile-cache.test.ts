import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

// What ships: the cache as the built CLI installs it (scripts/post-build.mjs), run in a process of its own, since it
// changes how every CommonJS file of that process is compiled.
const shipped = path.resolve(import.meta.dirname, '..', '..', 'dist', 'cli', 'compile-cache.cjs');

let root: string;
beforeAll(() => {
  if (!existsSync(shipped)) throw new Error('these tests load the built compile cache: npm run build first');
  root = mkdtempSync(path.join(os.tmpdir(), 'asp-compile-cache-'));
  mkdirSync(path.join(root, 'bundle', 'chunks'), { recursive: true });
  writeFileSync(path.join(root, 'bundle', 'entry.cjs'), "#!/usr/bin/env node\nconst { twice } = require('./chunks/part.cjs');\nconsole.log(JSON.stringify({ value: twice(21), file: __filename }));\n");
  writeFileSync(path.join(root, 'bundle', 'chunks', 'part.cjs'), 'exports.twice = (n) => n * 2;\n');
  writeFileSync(path.join(root, 'outside.cjs'), "module.exports = 'outside';\n");
  // Loaded by Node itself (a dynamic import): it works, and has no entry.
  writeFileSync(path.join(root, 'bundle', 'chunks', 'esm.mjs'), 'export const answer = 42;\n');
  writeFileSync(path.join(root, 'bundle', 'chunks', 'importer.cjs'), "exports.load = () => import('./esm.mjs').then((module) => module.answer);\n");
});

/** Runs entry.cjs through the cache in `dir`; prints what installCompileCache returned and the entry's output. */
function run(dir: string, env: Record<string, string> = {}): { installed: string | null; output: { value: number; file: string }; outside: string } {
  const script = `
    const installed = require(${JSON.stringify(shipped)}).installCompileCache(${JSON.stringify(path.join(root, 'bundle'))}, process.env, ${JSON.stringify(dir)});
    const outside = require(${JSON.stringify(path.join(root, 'outside.cjs'))});
    const log = console.log;
    console.log = (text) => log(JSON.stringify({ installed: installed ?? null, output: JSON.parse(text), outside }));
    require(${JSON.stringify(path.join(root, 'bundle', 'chunks', 'importer.cjs'))}).load().then((answer) => {
      if (answer !== 42) throw new Error('import() gave ' + answer);
      require(${JSON.stringify(path.join(root, 'bundle', 'entry.cjs'))});
    });
  `;
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  return JSON.parse(result.stdout) as ReturnType<typeof run>;
}

const entries = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);

describe("V8's code cache for the CLI's chunks", () => {
  it('the first run writes an entry per file under the root (none for a file outside it), the next one reads them and writes nothing', () => {
    const dir = path.join(root, 'cache-a');
    const first = run(dir);
    expect(first).toEqual({ installed: dir, output: { value: 42, file: path.join(root, 'bundle', 'entry.cjs') }, outside: 'outside' });
    const written = entries(dir);
    expect(written).toHaveLength(2);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const times = written.map((name) => statSync(path.join(dir, name)).mtimeMs);
    // V8 accepted what the first run wrote: a refused entry would be written again.
    expect(run(dir).output.value).toBe(42);
    expect(entries(dir)).toEqual(written);
    expect(written.map((name) => statSync(path.join(dir, name)).mtimeMs)).toEqual(times);
  });

  it('an entry V8 refuses (damaged) costs an ordinary compile and is written again; the code runs as written', () => {
    const dir = path.join(root, 'cache-b');
    run(dir);
    for (const name of entries(dir)) writeFileSync(path.join(dir, name), 'not a code cache');
    expect(run(dir).output.value).toBe(42);
    for (const name of entries(dir)) expect(statSync(path.join(dir, name)).size).toBeGreaterThan(100);
  });

  it('a changed file gets an entry of its own: a cache never runs old code', () => {
    const dir = path.join(root, 'cache-c');
    run(dir);
    writeFileSync(path.join(root, 'bundle', 'chunks', 'part.cjs'), 'exports.twice = (n) => n * 2 + 1;\n');
    try {
      expect(run(dir).output.value).toBe(43);
      expect(entries(dir)).toHaveLength(3);
    } finally {
      writeFileSync(path.join(root, 'bundle', 'chunks', 'part.cjs'), 'exports.twice = (n) => n * 2;\n');
    }
  });

  it('a directory others can write is not used (the cache is code asp runs), nor is one with ASP_COMPILE_CACHE=0', () => {
    const shared = path.join(root, 'cache-shared');
    mkdirSync(shared, { mode: 0o777 });
    chmodSync(shared, 0o777);
    expect(run(shared)).toMatchObject({ installed: null, output: { value: 42 } });
    expect(entries(shared)).toEqual([]);
    const off = path.join(root, 'cache-off');
    expect(run(off, { ASP_COMPILE_CACHE: '0' })).toMatchObject({ installed: null, output: { value: 42 } });
    expect(existsSync(off)).toBe(false);
  });

  it('a path that is a file, not a directory: no cache, the CLI runs', () => {
    const file = path.join(root, 'cache-file');
    writeFileSync(file, '');
    expect(run(file)).toMatchObject({ installed: null, output: { value: 42 } });
  });
});
