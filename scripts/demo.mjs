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

// `--pipeline asp` runs the ASP agents; with no model configured they replay the recorded cassette, offline.
const args = process.argv.slice(2);
const asp = args.some((arg, index) => arg === '--pipeline=asp' || (arg === '--pipeline' && args[index + 1] === 'asp'));
const env = { ...process.env };
if (asp && !env.ASP_MODEL && !env.OPENAI_API_KEY && !env.ANTHROPIC_API_KEY) {
  env.ASP_MODEL = `cassette:${path.join(root, 'examples', 'asp-demo', 'cassette.json')}`;
  process.stderr.write('asp demo: no model configured, replaying examples/asp-demo/cassette.json (no network, no key)\n');
}
const task = asp ? 'Add a greetAll function' : 'Review and test the greet function';

const result = spawnSync(process.execPath, [path.join(root, 'dist', 'cli', 'asp.cjs'), 'run', '--repo', repo, '--task', task, ...args], { stdio: 'inherit', env });
process.exitCode = result.status ?? 1;
