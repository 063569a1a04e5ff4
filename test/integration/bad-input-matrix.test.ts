import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { asp, type CliRun } from '../helpers/cli.js';
import { docker, dockerAvailable, leftovers } from '../helpers/docker.js';

/**
 * Every command, fed bad input: each case must end with one error line that names the problem and says what to
 * do, exit 2 (bad input) or 3 (infrastructure), print no secret it was given, and leave nothing half-made: no
 * task dir, no file under ASP_HOME, no container, no volume.
 *
 * On unreadable files: these tests run as root, and root reads a chmod 000 file. The honest cases are a
 * directory where a file is expected, and /proc/sys/vm/compact_memory, which is write-only even for root
 * (procfs checks its mode bits without the DAC override).
 */

const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-matrix-'));
const file = (name: string, content: string) => {
  writeFileSync(path.join(scratch, name), content);
  return path.join(scratch, name);
};
const repo = path.join(scratch, 'repo');
mkdirSync(repo);
execFileSync('git', ['-C', repo, 'init', '-q', '-b', 'main']);
execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', 'x']);
const plainFile = file('plain.txt', 'not a repository\n');
const lockedDir = path.join(scratch, 'locked');
mkdirSync(lockedDir);
chmodSync(lockedDir, 0o000);
const notGit = mkdtempSync(path.join(scratch, 'not-git-'));
const writeOnly = '/proc/sys/vm/compact_memory';
const validList = file('valid.jsonl', `{"repo": "${repo}", "steps": [{"name": "a", "run": "true"}]}\n`);
const injectionMarker = path.join(scratch, 'injected');
const cpusHere = os.availableParallelism();
const memoryHere = os.totalmem();
const noDocker = { DOCKER_HOST: 'unix:///tmp/none.sock' };
const langfuse = { LANGFUSE_PUBLIC_KEY: 'pk-lf-matrix', LANGFUSE_SECRET_KEY: 'sk-lf-matrix-S3CRET', LANGFUSE_BASE_URL: 'http://127.0.0.1:9' };

interface Case {
  /** The command as `asp --help` names it ('' for none). */
  command: string;
  what: string;
  args: string[];
  env?: Record<string, string>;
  exit: 2 | 3;
  /** Names the problem... */
  problem: RegExp;
  /** ...and says what to do about it. */
  fix: RegExp;
  /** Given to asp and never printed back. */
  secret?: string;
  /** doctor reports on stdout, as a FAIL line. */
  on?: 'stdout';
}

const run = (...args: string[]) => ['run', '--repo', repo, '--step', 'a=true', ...args];
const SPEC_ID = /\[a-z0-9\]\[a-z0-9._-\]\{0,62\}/;

/** Cases whose outcome does not need a Docker daemon (they fail before one, or expect it to be missing). */
const cases: Case[] = [
  { command: '', what: 'an unknown command', args: ['frobnicate'], exit: 2, problem: /unknown command 'frobnicate'/, fix: /see asp --help/ },
  // asp run: flags
  { command: 'run', what: 'no --repo', args: ['run', '--step', 'a=true'], exit: 2, problem: /required option '--repo/, fix: /see asp --help/ },
  { command: 'run', what: 'an unknown option', args: run('--frobnicate'), exit: 2, problem: /unknown option '--frobnicate'/, fix: /see asp --help/ },
  { command: 'run', what: 'a step flag without a command', args: ['run', '--repo', repo, '--step', 'a='], exit: 2, problem: /--step "a=" is not name=command/, fix: /--step test="npm test"/ },
  { command: 'run', what: 'a check flag without a command', args: run('--check', 't='), exit: 2, problem: /--check "t=" is not name=command/, fix: /--check test="npm test"/ },
  { command: 'run', what: 'a check step with a bad name', args: run('--check', 'bad name=true'), exit: 2, problem: /--check #1 name must be/, fix: /letters, digits/ },
  {
    command: 'run',
    what: 'a --check-dir that does not exist',
    args: run('--check', 't=true', '--check-dir', path.join(scratch, 'no-such-dir')),
    exit: 2,
    problem: /--check-dir .*no-such-dir does not exist/,
    fix: /pass --check-dir the directory of files only the check sees/,
  },
  {
    command: 'run',
    what: 'a --check-dir that is a file',
    args: run('--check', 't=true', '--check-dir', plainFile),
    exit: 2,
    problem: /--check-dir .*plain\.txt is not a directory/,
    fix: /pass --check-dir a directory/,
  },
  { command: 'run', what: 'a --check-dir without check steps', args: run('--check-dir', scratch), exit: 2, problem: /--check-dir without check steps/, fix: /add --check name=command/ },
  { command: 'run', what: '--task and --task-file', args: run('--task', 'x', '--task-file', plainFile), exit: 2, problem: /--task and --task-file both given/, fix: /use one of them/ },
  {
    command: 'run',
    what: 'a task file far over 1 MiB',
    args: run('--task-file', file('huge-task.txt', 'x'.repeat(2 * 1024 * 1024))),
    exit: 2,
    problem: /cannot read task file .*larger than/,
    fix: /pass --task-file a readable text file of at most 1 MiB/,
  },
  {
    command: 'run',
    what: 'a task just over 1 MiB',
    args: run('--task-file', file('big-task.txt', 'é'.repeat(512 * 1024) + 'x')),
    exit: 2,
    problem: /--task is longer than 1048576 bytes/,
    fix: /put the details in a file of the repository/,
  },
  { command: 'run', what: 'a step name with a slash', args: ['run', '--repo', repo, '--step', '../x=true'], exit: 2, problem: /--step #1 name must be/, fix: /letters, digits/ },
  { command: 'run', what: 'a reserved step name', args: ['run', '--repo', repo, '--step', 'trace=true'], exit: 2, problem: /--step #1 name is reserved/, fix: /pick another name/ },
  { command: 'run', what: 'a step name used twice', args: run('--step', 'a=false'), exit: 2, problem: /--step #2 name "a" is used twice/, fix: /must be unique/ },
  { command: 'run', what: '--step with --pipeline', args: run('--pipeline', 'x.json'), exit: 2, problem: /--step and --pipeline both given/, fix: /use one of them/ },
  { command: 'run', what: 'a task id with a slash', args: run('--id', 'a/b'), exit: 2, problem: /--id must match/, fix: SPEC_ID },
  { command: 'run', what: 'a task id that is ..', args: run('--id', '..'), exit: 2, problem: /--id must match/, fix: SPEC_ID },
  { command: 'run', what: 'a task id with spaces', args: run('--id', 'my task'), exit: 2, problem: /--id must match/, fix: SPEC_ID },
  { command: 'run', what: '--memory 0', args: run('--memory', '0'), exit: 2, problem: /--memory "0" is not a size/, fix: /use e\.g\. 512m/ },
  { command: 'run', what: 'a negative --memory', args: run('--memory', '-1g'), exit: 2, problem: /--memory "-1g" is not a size/, fix: /use e\.g\. 512m/ },
  { command: 'run', what: "--memory under Docker's minimum", args: run('--memory', '5m'), exit: 2, problem: /--memory must be at least 6m/, fix: /at least 6m/ },
  { command: 'run', what: '--cpus 0', args: run('--cpus', '0'), exit: 2, problem: /--cpus must be more than 0/, fix: /at least 0\.01/ },
  { command: 'run', what: "--cpus under Docker's floor", args: run('--cpus', '0.001'), exit: 2, problem: /--cpus must be at least 0\.01/, fix: /at least 0\.01/ },
  { command: 'run', what: '--cpus 999', args: run('--cpus', '999'), exit: 2, problem: /--cpus must be at most 256/, fix: /at most 256/ },
  { command: 'run', what: '--cpus that is not a number', args: run('--cpus', 'many'), exit: 2, problem: /--cpus "many" is not a number/, fix: /pass e\.g\. --cpus 1\.5/ },
  { command: 'run', what: 'a negative --pids (Docker\'s "unlimited")', args: run('--pids', '-1'), exit: 2, problem: /--pids must be at least 16/, fix: /at least 16/ },
  { command: 'run', what: '--timeout 0', args: run('--timeout', '0'), exit: 2, problem: /--timeout "0" is not a duration/, fix: /use e\.g\. 90s/ },
  { command: 'run', what: 'a month-long --timeout', args: run('--timeout', '30d'), exit: 2, problem: /--timeout must be at most 7d/, fix: /at most 7d/ },
  { command: 'run', what: '--output-cap 0', args: run('--output-cap', '0'), exit: 2, problem: /--output-cap "0" is not a size/, fix: /use e\.g\. 512m/ },
  { command: 'run', what: '--disk 0', args: run('--disk', '0'), exit: 2, problem: /--disk "0" is not a size/, fix: /use e\.g\. 512m/ },
  { command: 'run', what: 'an --env that is not a variable name', args: run('--env', 'BAD-NAME'), exit: 2, problem: /--env.* must be an environment variable name/, fix: /environment variable name/ },
  { command: 'run', what: 'a --branch that climbs out', args: run('--branch', '../evil'), exit: 2, problem: /--branch must be a plain git branch name/, fix: /letters, digits/ },
  { command: 'run', what: '--approve with --deny', args: run('--approve', '--deny'), exit: 2, problem: /--approve and --deny both given/, fix: /use one of them/ },
  // asp run: credentials never run and are never printed back
  {
    command: 'run',
    what: 'a password in the repository URL',
    args: ['run', '--repo', 'https://user:hunter2-S3CRET@example.com/x.git', '--step', 'a=true'],
    exit: 2,
    problem: /--repo contains credentials/,
    fix: /credential helper/,
    secret: 'hunter2-S3CRET',
  },
  {
    command: 'run',
    what: 'a token as the user of the URL',
    args: ['run', '--repo', 'https://ghp_T0KEN-S3CRET@github.com/o/r.git', '--step', 'a=true'],
    exit: 2,
    problem: /--repo contains credentials/,
    fix: /credential helper/,
    secret: 'ghp_T0KEN-S3CRET',
  },
  {
    command: 'run',
    what: 'a password in an ssh URL',
    args: ['run', '--repo', 'ssh://git:pw-S3CRET@example.com/x.git', '--step', 'a=true'],
    exit: 2,
    problem: /--repo contains credentials/,
    fix: /credential helper/,
    secret: 'pw-S3CRET',
  },
  { command: 'run', what: 'Docker not running', args: run(), env: noDocker, exit: 3, problem: /Docker at unix:\/\/\/tmp\/none\.sock does not answer/, fix: /start the Docker daemon/ },
  {
    command: 'run',
    what: 'a DOCKER_HOST asp cannot use',
    args: run(),
    env: { DOCKER_HOST: 'npipe:////./pipe/docker_engine' },
    exit: 2,
    problem: /DOCKER_HOST=npipe:\/\/\/\/\.\/pipe\/docker_engine is not a daemon address asp can use/,
    fix: /use unix:\/\/\/path\/to\/docker\.sock, tcp:\/\/host:port or ssh:\/\/\[user@\]host/,
  },
  {
    command: 'run',
    what: 'an ssh:// DOCKER_HOST with a password in it',
    args: run(),
    env: { DOCKER_HOST: 'ssh://me:pw-S3CRET@docker.example' },
    exit: 2,
    problem: /DOCKER_HOST=ssh:\/\/me:\*\*\*@docker\.example is not an ssh address asp can use/,
    fix: /without a password or a path/,
    secret: 'pw-S3CRET',
  },
  {
    command: 'run',
    what: 'an ssh:// daemon that ssh cannot reach',
    args: run(),
    env: { DOCKER_HOST: 'ssh://nobody@127.0.0.1:1' },
    exit: 3,
    problem: /ssh to Docker at ssh:\/\/nobody@127\.0\.0\.1:1 failed \(ssh exited 255: .*(refused|Connection)/,
    fix: /docker system dial-stdio. works from this shell without a prompt/,
  },
  // asp batch
  { command: 'batch', what: 'no task list', args: ['batch'], exit: 2, problem: /missing required argument 'tasks'/, fix: /see asp --help/ },
  {
    command: 'batch',
    what: 'a task list that does not exist',
    args: ['batch', path.join(scratch, 'nothere.jsonl')],
    exit: 2,
    problem: /cannot read task list .*ENOENT/,
    fix: /pass a readable \.jsonl/,
  },
  { command: 'batch', what: 'a directory, chmod 000, for a task list', args: ['batch', lockedDir], exit: 2, problem: /cannot read task list .*not a regular file/, fix: /pass a readable \.jsonl/ },
  { command: 'batch', what: 'a task list even root cannot read', args: ['batch', writeOnly], exit: 2, problem: /cannot read task list .*EACCES/, fix: /pass a readable \.jsonl/ },
  { command: 'batch', what: 'an empty task list', args: ['batch', file('empty.jsonl', '')], exit: 2, problem: /has no tasks/, fix: /write one task spec per line/ },
  { command: 'batch', what: 'a JSON array cut short', args: ['batch', file('cut.json', '[{"repo":')], exit: 2, problem: /is not valid JSON/, fix: /fix the JSON/ },
  {
    command: 'batch',
    what: 'a line that is not JSON',
    args: ['batch', file('broken.jsonl', `{"repo": "${repo}"}\n{not json\n`)],
    exit: 2,
    problem: /broken\.jsonl:2: not valid JSON/,
    fix: /fix that line/,
  },
  {
    command: 'batch',
    what: 'a repo of the wrong type',
    args: ['batch', file('types.jsonl', '{"repo": 5}\n')],
    exit: 2,
    problem: /types\.jsonl:1: repo .*expected string, received number/,
    fix: /fix that line/,
  },
  { command: 'batch', what: 'an unknown field', args: ['batch', file('field.jsonl', '{"repo": ".", "memory": "2g"}\n')], exit: 2, problem: /unknown field\(s\) "memory"/, fix: /fix that line/ },
  {
    command: 'batch',
    what: 'an absurd CPU limit',
    args: ['batch', file('cpus.jsonl', '{"repo": ".", "limits": {"cpus": 999}}\n')],
    exit: 2,
    problem: /limits\.cpus must be at most 256/,
    fix: /fix that line/,
  },
  {
    command: 'batch',
    what: 'a negative memory limit',
    args: ['batch', file('memory.jsonl', '{"repo": ".", "limits": {"memory": "-1g"}}\n')],
    exit: 2,
    problem: /limits\.memory "-1g" is not a size/,
    fix: /fix that line/,
  },
  { command: 'batch', what: 'a task id that climbs out', args: ['batch', file('id.jsonl', '{"repo": ".", "id": "../x"}\n')], exit: 2, problem: /id must match/, fix: /fix that line/ },
  {
    command: 'batch',
    what: 'a task id used twice',
    args: ['batch', file('twice.jsonl', '{"repo": ".", "id": "x"}\n{"repo": ".", "id": "x"}\n')],
    exit: 2,
    problem: /twice\.jsonl:2: id "x" is used on line 1 already/,
    fix: /fix that line/,
  },
  {
    command: 'batch',
    what: 'a bad step name',
    args: ['batch', file('step.jsonl', '{"repo": ".", "steps": [{"name": "a b", "run": "true"}]}\n')],
    exit: 2,
    problem: /steps\.0\.name must be/,
    fix: /fix that line/,
  },
  {
    command: 'batch',
    what: 'credentials in a repo',
    args: ['batch', file('cred.jsonl', '{"repo": "https://x-access-token:tok-S3CRET@example.com/x.git"}\n')],
    exit: 2,
    problem: /repo contains credentials/,
    fix: /credential helper/,
    secret: 'tok-S3CRET',
  },
  {
    command: 'batch',
    what: '--concurrency 0',
    args: ['batch', validList, '--concurrency', '0'],
    exit: 2,
    problem: /--concurrency "0" is not a whole number from 1 to 256/,
    fix: /pass e\.g\. --concurrency 2/,
  },
  { command: 'batch', what: '--concurrency 9999', args: ['batch', validList, '--concurrency', '9999'], exit: 2, problem: /--concurrency "9999" is not a whole number/, fix: /pass e\.g\./ },
  { command: 'batch', what: '--retries -1', args: ['batch', validList, '--retries', '-1'], exit: 2, problem: /--retries "-1" is not a whole number from 0 to 10/, fix: /pass e\.g\. --retries 1/ },
  {
    command: 'batch',
    what: '--engine-wait soon',
    args: ['batch', validList, '--engine-wait', 'soon'],
    exit: 2,
    problem: /--engine-wait "soon" is not a duration from 1ms to 24h/,
    fix: /pass e\.g\. --engine-wait 2m/,
  },
  {
    command: 'batch',
    what: '--engine-wait 2d',
    args: ['batch', validList, '--engine-wait', '2d'],
    exit: 2,
    problem: /--engine-wait "2d" is not a duration from 1ms to 24h/,
    fix: /pass e\.g\. --engine-wait 2m/,
  },
  { command: 'batch', what: 'Docker not running', args: ['batch', validList], env: noDocker, exit: 3, problem: /Docker at unix:\/\/\/tmp\/none\.sock does not answer/, fix: /start the Docker daemon/ },
  // asp approve
  { command: 'approve', what: 'a task id that climbs out', args: ['approve', '../../etc'], exit: 2, problem: /"\.\.\/\.\.\/etc" is not a task id/, fix: /pass the id asp run printed/ },
  { command: 'approve', what: 'a task id with spaces', args: ['approve', 'has space'], exit: 2, problem: /"has space" is not a task id/, fix: /pass the id asp run printed/ },
  { command: 'approve', what: 'a task that does not exist', args: ['approve', 'no-such-task'], exit: 2, problem: /no task no-such-task under/, fix: /check the id with asp workspaces ls/ },
  // asp probe
  { command: 'probe report', what: 'an unknown option', args: ['probe', 'report', '--frobnicate'], exit: 2, problem: /unknown option '--frobnicate'/, fix: /see asp --help/ },
  // asp doctor
  { command: 'doctor', what: 'an unknown option', args: ['doctor', '--frobnicate'], exit: 2, problem: /unknown option '--frobnicate'/, fix: /see asp --help/ },
  { command: 'doctor', what: 'Docker not running', args: ['doctor'], env: noDocker, exit: 3, on: 'stdout', problem: /FAIL\s+docker .*does not answer/, fix: /start the Docker daemon/ },
  // asp image seccomp-profile
  { command: 'image seccomp-profile', what: 'an unknown option', args: ['image', 'seccomp-profile', '--frobnicate'], exit: 2, problem: /unknown option '--frobnicate'/, fix: /see asp --help/ },
  // asp batch merge-reports
  {
    command: 'batch merge-reports',
    what: 'no reports to merge',
    args: ['batch', 'merge-reports', path.join(scratch, 'merged.json')],
    exit: 2,
    problem: /missing required argument 'reports'/,
    fix: /see asp --help/,
  },
  {
    command: 'batch merge-reports',
    what: 'a report that does not exist',
    args: ['batch', 'merge-reports', path.join(scratch, 'merged.json'), path.join(scratch, 'no-report.json')],
    exit: 2,
    problem: /cannot read batch report .*no-report\.json: ENOENT/,
    fix: /name the JSON file an asp batch --report wrote/,
  },
  {
    command: 'batch merge-reports',
    what: 'a file that is not a batch report',
    args: ['batch', 'merge-reports', path.join(scratch, 'merged.json'), file('not-a-report.json', '{"hello": 1}')],
    exit: 2,
    problem: /not-a-report\.json is not an asp batch report: batchId is required/,
    fix: /name the JSON file an asp batch --report wrote/,
  },
  // asp pool
  { command: 'pool up', what: 'a size of 0', args: ['pool', 'up', '--size', '0'], exit: 2, problem: /--size "0" is not a whole number from 1 to 64/, fix: /pass e\.g\. --size 2/ },
  {
    command: 'pool up',
    what: 'a size that is not a number',
    args: ['pool', 'up', '--size', 'many'],
    exit: 2,
    problem: /--size "many" is not a whole number from 1 to 64/,
    fix: /pass e\.g\. --size 2/,
  },
  { command: 'pool up', what: 'a TTL past 24h', args: ['pool', 'up', '--ttl', '2d'], exit: 2, problem: /--ttl 2d is not a duration from 1s to 24h/, fix: /e\.g\. --ttl 10m/ },
  { command: 'pool up', what: 'a TTL that is no duration', args: ['pool', 'up', '--ttl', 'soon'], exit: 2, problem: /--ttl soon is not a duration/, fix: /e\.g\. --ttl 10m/ },
  { command: 'pool up', what: 'a memory limit under Docker’s minimum', args: ['pool', 'up', '--memory', '1k'], exit: 2, problem: /--memory must be at least 6m/, fix: /as asp run takes them/ },
  { command: 'pool up', what: 'CPUs that are no number', args: ['pool', 'up', '--cpus', 'lots'], exit: 2, problem: /--cpus "lots" is not a number/, fix: /pass e\.g\. --cpus 1\.5/ },
  { command: 'pool up', what: 'Docker not running', args: ['pool', 'up'], env: noDocker, exit: 3, problem: /Docker at unix:\/\/\/tmp\/none\.sock does not answer/, fix: /start the Docker daemon/ },
  { command: 'pool up', what: 'the Kubernetes backend', args: ['pool', 'up'], env: { ASP_BACKEND: 'k8s' }, exit: 2, problem: /warm pools run on Docker only/, fix: /unset ASP_BACKEND/ },
  { command: 'pool down', what: 'a key that is no pool key', args: ['pool', 'down', '--key', 'nope'], exit: 2, problem: /--key nope is not a pool key/, fix: /asp pool status lists/ },
  { command: 'pool down', what: 'a pool that is not there', args: ['pool', 'down', '--key', '0123456789ab'], exit: 2, problem: /no pool 0123456789ab/, fix: /asp pool status lists/ },
  { command: 'pool status', what: 'an unknown option', args: ['pool', 'status', '--frobnicate'], exit: 2, problem: /unknown option '--frobnicate'/, fix: /see asp --help/ },
  // asp image build
  { command: 'image build', what: 'an unknown option', args: ['image', 'build', '--frobnicate'], exit: 2, problem: /unknown option '--frobnicate'/, fix: /see asp --help/ },
  {
    command: 'image build',
    what: 'Docker not running',
    args: ['image', 'build'],
    env: noDocker,
    exit: 3,
    problem: /Docker at unix:\/\/\/tmp\/none\.sock does not answer/,
    fix: /start the Docker daemon/,
  },
  // asp reap
  { command: 'reap', what: 'an age that is not one', args: ['reap', '--older-than', 'soon'], exit: 2, problem: /--older-than "soon" is not an age/, fix: /use a duration such as 90m/ },
  { command: 'reap', what: 'a negative age', args: ['reap', '--older-than', '-1h'], exit: 2, problem: /--older-than "-1h" is not an age/, fix: /use a duration such as 90m/ },
  { command: 'reap', what: 'Docker not running', args: ['reap'], env: noDocker, exit: 3, problem: /Docker at unix:\/\/\/tmp\/none\.sock does not answer/, fix: /start the Docker daemon/ },
  {
    command: 'reap',
    what: 'a DOCKER_HOST asp cannot use',
    args: ['reap'],
    env: { DOCKER_HOST: 'npipe:////./pipe/docker_engine' },
    exit: 2,
    problem: /DOCKER_HOST=npipe:\/\/\/\/\.\/pipe\/docker_engine is not a daemon address asp can use/,
    fix: /use unix:\/\/\//,
  },
  // asp workspaces
  {
    command: 'workspaces ls',
    what: 'a workspace root that is a file',
    args: ['workspaces', 'ls'],
    env: { ASP_WORKSPACES: plainFile },
    exit: 3,
    problem: /cannot read the workspace root .*ENOTDIR/,
    fix: /check ASP_WORKSPACES/,
  },
  {
    command: 'workspaces prune',
    what: 'an age that is not one',
    args: ['workspaces', 'prune', '--older-than', 'x'],
    exit: 2,
    problem: /--older-than "x" is not an age/,
    fix: /use a duration such as 90m/,
  },
  {
    command: 'workspaces prune',
    what: 'an ASP_RETENTION that is not a duration',
    args: ['workspaces', 'prune'],
    env: { ASP_RETENTION: 'bogus' },
    exit: 2,
    problem: /ASP_RETENTION="bogus" is not a duration/,
    fix: /use a number of days/,
  },
  // asp traces
  { command: 'traces ls', what: 'an ASP_HOME that is a file', args: ['traces', 'ls'], env: { ASP_HOME: plainFile }, exit: 3, problem: /cannot read .*traces: ENOTDIR/, fix: /check ASP_HOME/ },
  { command: 'traces show', what: 'a task id that climbs out', args: ['traces', 'show', '../../etc/passwd'], exit: 2, problem: /is not a task id/, fix: /list them with asp traces ls/ },
  { command: 'traces show', what: 'a task without a trace', args: ['traces', 'show', 'no-such-task'], exit: 2, problem: /no trace for task "no-such-task"/, fix: /asp traces ls/ },
  { command: 'traces export', what: 'an unknown format', args: ['traces', 'export', 'x', '--format', 'pdf'], exit: 2, problem: /--format "pdf" is not a trace format/, fix: /use json or md/ },
  { command: 'traces export', what: 'a task id with a slash', args: ['traces', 'export', 'a/b'], exit: 2, problem: /"a\/b" is not a task id/, fix: /list them with asp traces ls/ },
  { command: 'traces push', what: 'no Langfuse keys', args: ['traces', 'push'], exit: 2, problem: /traces push needs Langfuse keys/, fix: /set LANGFUSE_PUBLIC_KEY/ },
  {
    command: 'traces push',
    what: '--timeout 0',
    args: ['traces', 'push', '--timeout', '0'],
    env: langfuse,
    exit: 2,
    problem: /--timeout "0" is not a duration/,
    fix: /use e\.g\. 30s/,
    secret: langfuse.LANGFUSE_SECRET_KEY,
  },
];

/** Cases whose outcome needs the real daemon: an image, a runtime, the daemon's machine, a clone beside a container. */
const daemonCases: Case[] = [
  {
    command: 'run',
    what: 'an image that does not exist',
    args: run('--image', 'asp-no-such-image:latest'),
    exit: 3,
    problem: /image asp-no-such-image:latest is not present/,
    fix: /build or load it first/,
  },
  {
    command: 'run',
    what: 'a runtime that is not installed',
    args: run('--runtime', 'runsc-not-here'),
    exit: 3,
    problem: /runsc-not-here/,
    fix: /install that runtime in the daemon or drop --runtime/,
  },
  {
    command: 'run',
    what: "more CPUs than the daemon's machine has",
    args: run('--cpus', String(cpusHere + 1)),
    exit: 2,
    problem: new RegExp(`a CPU limit of ${cpusHere + 1} is more than the ${cpusHere} CPUs`),
    fix: new RegExp(`pass --cpus ${cpusHere} or less`),
  },
  {
    command: 'run',
    what: "more memory than the daemon's machine has",
    args: run('--memory', `${Math.ceil(memoryHere / 1024 ** 3) + 8}g`),
    exit: 2,
    problem: /a memory limit of .* is more than the .* of the Docker daemon's machine/,
    fix: /pass --memory \d+g or less/,
  },
  {
    command: 'run',
    what: 'a --repo that does not exist',
    args: ['run', '--repo', '/nonexistent/repo', '--step', 'a=true'],
    exit: 2,
    problem: /repository \/nonexistent\/repo not found/,
    fix: /pass --repo a git URL or the path/,
  },
  {
    command: 'run',
    what: 'a --repo that is a file',
    args: ['run', '--repo', plainFile, '--step', 'a=true'],
    exit: 2,
    problem: /is not a directory/,
    fix: /pass --repo the path of a local git repository/,
  },
  { command: 'run', what: 'a --repo that is not a git repository', args: ['run', '--repo', notGit, '--step', 'a=true'], exit: 2, problem: /cannot clone/, fix: /check that the repository exists/ },
  {
    command: 'run',
    what: 'a --repo that looks like an option',
    args: ['run', `--repo=--upload-pack=touch ${injectionMarker}`, '--step', 'a=true'],
    exit: 2,
    problem: /not found: no such directory/,
    fix: /pass --repo a git URL/,
  },
  {
    command: 'run',
    what: 'a --ref that does not exist',
    args: run('--ref', 'no-such-branch'),
    exit: 2,
    problem: /ref "no-such-branch" not found/,
    fix: /pass --ref a branch, tag or commit that exists/,
  },
  {
    command: 'run',
    what: 'a --ref that looks like an option',
    args: run(`--ref=--upload-pack=touch ${injectionMarker}`),
    exit: 2,
    problem: /ref "--upload-pack=.*" not found/,
    fix: /pass --ref a branch/,
  },
  {
    command: 'run',
    what: 'a pipeline file that does not exist',
    args: ['run', '--repo', repo, '--pipeline', path.join(scratch, 'nothere.json')],
    exit: 2,
    problem: /cannot read pipeline .*ENOENT/,
    fix: /pass --pipeline a readable JSON file/,
  },
  {
    command: 'run',
    what: 'a pipeline even root cannot read',
    args: ['run', '--repo', repo, '--pipeline', writeOnly],
    exit: 2,
    problem: /cannot read pipeline .*EACCES/,
    fix: /pass --pipeline a readable JSON file/,
  },
  {
    command: 'run',
    what: 'a directory, chmod 000, for a pipeline',
    args: ['run', '--repo', repo, '--pipeline', lockedDir],
    exit: 2,
    problem: /cannot read pipeline .*not a regular file/,
    fix: /pass --pipeline a readable JSON file/,
  },
  {
    command: 'run',
    what: 'a pipeline that is not JSON',
    args: ['run', '--repo', repo, '--pipeline', file('broken.json', '{not json')],
    exit: 2,
    problem: /is not valid JSON/,
    fix: /fix the JSON syntax/,
  },
  {
    command: 'run',
    what: 'a pipeline of the wrong type',
    args: ['run', '--repo', repo, '--pipeline', file('types.json', '{"steps": "npm test"}')],
    exit: 2,
    problem: /pipeline .*steps .*expected array/,
    fix: /expected array/,
  },
  {
    command: 'run',
    what: 'a pipeline step with an unknown field',
    args: ['run', '--repo', repo, '--pipeline', file('field.json', '{"steps": [{"name": "a", "run": "x", "cmd": "y"}]}')],
    exit: 2,
    problem: /unknown field\(s\) "cmd"/,
    fix: /unknown field/,
  },
  {
    command: 'run',
    what: 'a workspace root that is a file',
    args: run(),
    env: { ASP_WORKSPACES: plainFile },
    exit: 3,
    problem: /cannot create the workspace root/,
    fix: /set ASP_WORKSPACES to a writable directory/,
  },
  {
    command: 'doctor',
    what: 'a workspace root that is a file',
    args: ['doctor'],
    env: { ASP_WORKSPACES: plainFile },
    exit: 3,
    on: 'stdout',
    problem: /FAIL\s+disk/,
    fix: /set ASP_WORKSPACES to a writable directory/,
  },
  {
    command: 'image build',
    what: 'a base image that does not exist',
    args: ['image', 'build', '--base', 'asp-no-such-base:1'],
    exit: 3,
    problem: /building asp-sandbox:\w+ failed/,
    fix: /check that the base image is present/,
  },
];

function walkFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.join(entry.parentPath, entry.name));
}

async function expectClean(testCase: Case): Promise<CliRun> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'asp-matrix-run-'));
  const workspaces = path.join(root, 'ws');
  const home = path.join(root, 'home');
  const result = await asp(testCase.args, { ASP_WORKSPACES: workspaces, ASP_HOME: home, ...testCase.env });
  const errors = result.stderr.split('\n').filter((line) => line.startsWith('asp: error:'));
  const said = testCase.on === 'stdout' ? result.stdout : (errors[0] ?? '');

  expect(result.code, result.stderr).toBe(testCase.exit);
  if (testCase.on !== 'stdout') {
    // One line, the last thing said, no stack trace.
    expect(errors).toHaveLength(1);
    expect(result.stderr.trim().split('\n').at(-1)).toBe(errors[0]);
  }
  expect(said).toMatch(testCase.problem);
  expect(said).toMatch(testCase.fix);
  expect(`${result.stdout}${result.stderr}`).not.toMatch(/\n\s+at .+:\d+:\d+/);
  if (testCase.secret) expect(`${result.stdout}${result.stderr}`).not.toContain(testCase.secret);
  // Nothing half-made: no task dir, nothing under ASP_HOME (a journal, a trace), no Docker object.
  expect(existsSync(workspaces) ? readdirSync(workspaces) : []).toEqual([]);
  expect(walkFiles(home)).toEqual([]);
  if (dockerAvailable) expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  return result;
}

describe('bad input to every command: one line naming the problem and the fix, exit 2 or 3, nothing half-made', () => {
  it.each(cases.map((testCase) => [`${testCase.command || 'asp'}: ${testCase.what}`, testCase] as const))('%s', async (_name, testCase) => {
    await expectClean(testCase);
  });

  it('has cases for every command asp --help lists', async () => {
    const listed = async (args: string[]) =>
      ((await asp([...args, '--help'])).stdout.split('Commands:')[1] ?? '')
        .split('\n')
        .map((line) => /^ {2}([a-z][a-z-]*)/.exec(line)?.[1])
        .filter((name): name is string => name !== undefined && name !== 'help');
    const leaves: string[] = [];
    for (const command of await listed([])) {
      const subcommands = await listed([command]);
      leaves.push(...(subcommands.length ? subcommands.map((sub) => `${command} ${sub}`) : [command]));
    }
    expect(leaves.length).toBeGreaterThan(5);
    const covered = new Set([...cases, ...daemonCases].map((testCase) => testCase.command));
    expect(leaves.filter((leaf) => !covered.has(leaf))).toEqual([]);
  });

  it('answers --json with one error object on stdout, secrets left out', async () => {
    const secret = 'ghp_J50N-S3CRET';
    const result = await expectClean({
      command: 'run',
      what: 'json',
      args: ['run', '--repo', `https://${secret}@github.com/o/r.git`, '--step', 'a=true', '--json'],
      exit: 2,
      problem: /credentials/,
      fix: /credential helper/,
      secret,
    });
    expect(JSON.parse(result.stdout)).toMatchObject({ status: 'error', exitCode: 2, error: { code: 'BAD_INPUT', message: expect.stringContaining('--repo contains credentials') } });
  });

  it('keeps the commands that need no Docker working without it', async () => {
    for (const args of [
      ['workspaces', 'ls'],
      ['traces', 'ls'],
    ]) {
      const result = await asp(args, { ...noDocker, ASP_WORKSPACES: path.join(scratch, 'empty-ws'), ASP_HOME: path.join(scratch, 'empty-home') });
      expect(result.code, args.join(' ')).toBe(0);
    }
  });
});

describe.skipIf(!dockerAvailable)('bad input that reaches the Docker daemon', () => {
  afterAll(async () => {
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it.each(daemonCases.map((testCase) => [`${testCase.command}: ${testCase.what}`, testCase] as const))('%s', async (_name, testCase) => {
    const before = await docker.listContainers([]);
    await expectClean(testCase);
    // Not even an intermediate build container or a created-but-never-started sandbox.
    expect((await docker.listContainers([])).length).toBe(before.length);
    expect(existsSync(injectionMarker)).toBe(false);
  });
});
