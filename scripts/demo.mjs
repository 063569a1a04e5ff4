// npm run demo: runs the bundled example repository through asp with its own pipeline.
// Needs nothing but Docker: local JSON traces, no account, no network.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeRepoFromDir } from './git-fixture.mjs';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const repo = path.join(os.tmpdir(), 'asp-demo-hello-repo');
makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
process.stderr.write(`asp demo: example repository ready at ${repo}\n`);

const result = spawnSync(
  process.execPath,
  [path.join(root, 'dist', 'src', 'cli', 'main.js'), 'run', '--repo', repo, '--task', 'Review and test the greet function', ...process.argv.slice(2)],
  { stdio: 'inherit' },
);
process.exitCode = result.status ?? 1;
