// Images that are NOT asp's sandbox image, for the tests of issue 16 (asp must run a task on an image someone else
// made). No image registry is reachable from the machines this project is built on, so all are made from Debian's
// packages and `docker import`ed: a Debian root with python3 and pytest but without bash, git or node, a busybox
// root without any libc, and a musl root laid out as Alpine's is (musl's loader, a shell linked against it, no glibc). Each is cached on the daemon under a tag derived from a hash of the recipes (this
// file), so a second call is one `docker image inspect`, and editing a recipe gives a new tag, never a stale image.
//
// Plain JavaScript so that CI can prebuild the images (scripts/build-test-images.mjs) without compiling anything;
// test/helpers/test-images.ts wraps the same code for the tests.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const TEST_IMAGE_KINDS = ['python', 'busybox', 'musl'];

/** Cap on the stderr kept for an error message: enough for the cause, never a whole debootstrap log. */
const STDERR_TAIL = 4000;

/**
 * Python 3 with pytest and pip (for the egress suite's `pip install` through the proxy) on Debian bookworm minbase, with bash and git removed (node is never installed): a test
 * image that has nothing asp ships or assumes, only /bin/sh (dash).
 */
async function buildPythonRoot(root, log) {
  if (process.getuid?.() !== 0) {
    throw new Error('building the python test image needs root (debootstrap creates device nodes and chroots): run as root, or prebuild with `sudo node scripts/build-test-images.mjs python`');
  }
  await ensureDebootstrap(log);
  const mirror = debianMirror();
  log(`debootstrap bookworm from ${mirror} (about a minute)`);
  try {
    await run('debootstrap', ['--variant=minbase', '--include=python3,python3-pytest,python3-pip', 'bookworm', root, mirror], {
      what: 'debootstrap',
      hint: `is the Debian mirror ${mirror} reachable?`,
    });
  } catch (error) {
    // debootstrap's own log says which package failed; the tail of its stdout rarely does.
    const detail = readTail(path.join(root, 'debootstrap', 'debootstrap.log'));
    throw detail ? new Error(`${error.message}\n--- debootstrap.log (tail) ---\n${detail}`, { cause: error.cause }) : error;
  }
  // bookworm's debootstrap merges /usr, so bin/bash is usr/bin/bash; both are listed in case a root is not merged.
  // Only the binaries go: dpkg still lists bash as installed, which nothing in a test image reads.
  for (const relative of ['bin/bash', 'usr/bin/bash', 'bin/rbash', 'usr/bin/rbash', 'usr/bin/bashbug', 'usr/bin/git', 'usr/bin/node', 'usr/bin/nodejs', 'usr/local/bin/node']) {
    removeInsideRoot(root, relative);
  }
  const shell = path.join(root, 'usr', 'bin', 'sh');
  const dash = path.join(root, 'usr', 'bin', 'dash');
  const shellTarget = linkTarget(shell);
  if (!existsSync(dash) || shellTarget !== 'dash') {
    throw new Error(`python test image: /bin/sh is not a link to dash after debootstrap (it is ${shellTarget ?? 'not a link'}); the recipe in scripts/test-images.mjs needs a look`);
  }
  // Downloaded packages and package lists are of no use in a test image that never installs anything.
  for (const relative of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
    for (const entry of readdirSync(path.join(root, relative))) {
      if (entry !== 'partial' && entry !== 'lock') rmSync(path.join(root, relative, entry), { recursive: true, force: true });
    }
  }
}

/** busybox-static alone: bin/busybox, a symlink per applet, /tmp and an /etc/passwd with root and nobody. */
async function buildBusyboxRoot(root, log, work) {
  await addBusybox(root, log, work, { except: [] });
}

/**
 * What Alpine is made of, from Debian's packages: musl's dynamic loader (which is its libc) at the path Alpine has
 * it, /bin/sh a dash compiled here against musl (so the shell the steps run in loads musl, never glibc), and
 * busybox-static for the other commands, as Alpine's busybox gives them. No glibc file anywhere in the image.
 */
async function buildMuslRoot(root, log, work) {
  const loaderName = `ld-musl-${MUSL_ARCH[process.arch] ?? process.arch}.so.1`;
  if (!MUSL_ARCH[process.arch]) throw new Error(`the musl test image is made for x86_64 and aarch64 only, not ${process.arch}`);
  await ensureDebianPackage('musl-gcc', 'musl-tools', log);
  const source = path.join(work, 'dash.tar.gz');
  const url = `${debianMirror().replace(/\/$/, '')}/pool/main/d/dash/${DASH_SOURCE.file}`;
  log(`fetching ${url}`);
  const response = await fetch(url).catch((cause) => {
    throw new Error(`fetching ${url} failed: ${cause.message} (is the Debian mirror reachable?)`, { cause });
  });
  if (!response.ok) throw new Error(`fetching ${url} failed: HTTP ${response.status} (is the Debian mirror reachable?)`);
  const bytes = Buffer.from(await response.arrayBuffer());
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (digest !== DASH_SOURCE.sha256) throw new Error(`${url} has sha256 ${digest}, not the ${DASH_SOURCE.sha256} Debian's Sources index lists`);
  writeFileSync(source, bytes);
  await run('tar', ['-C', work, '-xzf', source], { what: `tar -xzf ${DASH_SOURCE.file}` });
  const tree = path.join(work, DASH_SOURCE.dir);
  log('building dash against musl (a few seconds)');
  await run('./configure', ['CC=musl-gcc', '--quiet'], { cwd: tree, what: 'dash ./configure CC=musl-gcc' });
  await run('make', ['-s', `-j${os.availableParallelism()}`], { cwd: tree, what: 'make dash' });

  await addBusybox(root, log, work, { except: ['sh', 'ash'] });
  await run('strip', ['-o', path.join(root, 'bin', 'dash'), path.join(tree, 'src', 'dash')], { what: 'strip dash' });
  chmodSync(path.join(root, 'bin', 'dash'), 0o755);
  symlinkSync('dash', path.join(root, 'bin', 'sh'));
  mkdirSync(path.join(root, 'lib'));
  // Debian's loader is a link into its multiarch directory; Alpine's is the file itself.
  copyFileSync(realpathSync(path.join('/lib', loaderName)), path.join(root, 'lib', loaderName));
  chmodSync(path.join(root, 'lib', loaderName), 0o755);
}

/** Debian's names for the architectures musl's loader is named after. */
const MUSL_ARCH = { x64: 'x86_64', arm64: 'aarch64' };

/** dash's source as Debian bookworm ships it (the Sources index's sha256), built against musl for the musl image. */
const DASH_SOURCE = { file: 'dash_0.5.12.orig.tar.gz', dir: 'dash-0.5.12', sha256: '6a474ac46e8b0b32916c4c60df694c82058d3297d8b385b74508030ca4a8f28a' };

/** bin/busybox from busybox-static and a symlink per applet but those in `except`, /tmp, and an /etc/passwd. */
async function addBusybox(root, log, work, { except }) {
  log('apt-get download busybox-static');
  await run('apt-get', ['download', '-o', 'APT::Sandbox::User=root', 'busybox-static'], {
    cwd: work,
    what: 'apt-get download busybox-static',
    hint: 'is the Debian mirror reachable? After a fresh install run `apt-get update` first',
  });
  const deb = readdirSync(work).find((name) => name.startsWith('busybox-static_') && name.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download busybox-static left no .deb in ${work}`);
  const extracted = path.join(work, 'package');
  await run('dpkg-deb', ['-x', path.join(work, deb), extracted], { what: `dpkg-deb -x ${deb}`, hint: 'is the download complete?' });
  const binary = ['bin/busybox', 'usr/bin/busybox'].map((relative) => path.join(extracted, relative)).find((file) => existsSync(file));
  if (!binary) throw new Error(`${deb} holds no bin/busybox or usr/bin/busybox; the recipe in scripts/test-images.mjs needs a look`);

  mkdirSync(path.join(root, 'bin'), { recursive: true });
  mkdirSync(path.join(root, 'etc'));
  mkdirSync(path.join(root, 'tmp'));
  chmodSync(path.join(root, 'tmp'), 0o1777);
  copyFileSync(binary, path.join(root, 'bin', 'busybox'));
  chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  // The binary is static, so the host can ask it for its applets.
  const applets = (await run(binary, ['--list'], { what: 'busybox --list' })).split('\n').filter((name) => name !== '' && name !== 'busybox' && !except.includes(name));
  for (const name of applets) {
    if (!/^[\w.[\]-]+$/.test(name)) throw new Error(`busybox --list gave an unexpected applet name ${JSON.stringify(name)}`);
    symlinkSync('busybox', path.join(root, 'bin', name));
  }
  writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
}

/**
 * What each image is: how its root is made, the `docker import --change`s on top, and the command that must succeed
 * in it before the tag is kept.
 */
const RECIPES = {
  python: {
    buildRoot: buildPythonRoot,
    // Deliberately unfriendly defaults that asp must override rather than inherit: a user that owns nothing, a
    // working directory that is not the workspace, and an environment variable asp did not set.
    changes: ['CMD ["python3"]', 'USER 65534:65534', 'WORKDIR /srv', 'ENV PYTHONDONTWRITEBYTECODE=1', 'LABEL asp.test-image=python'],
    check: ['sh', '-c', 'for tool in bash git node; do if command -v "$tool"; then echo "$tool is still in the image" >&2; exit 1; fi; done; python3 -m pytest --version && python3 -m pip --version'],
  },
  busybox: {
    buildRoot: buildBusyboxRoot,
    changes: ['CMD ["sh"]', 'LABEL asp.test-image=busybox'],
    // Made without root, the files would belong to whoever built it; in the image they belong to root.
    rootOwned: true,
    // Runs at all only because busybox needs no libc: there is none in the image.
    check: ['sh', '-c', 'echo ok'],
  },
  musl: {
    buildRoot: buildMuslRoot,
    changes: ['CMD ["sh"]', 'LABEL asp.test-image=musl'],
    rootOwned: true,
    // The shell is the musl-linked dash, and no glibc loader or libc is anywhere in the image.
    check: ['sh', '-c', 'test "$(readlink /proc/$$/exe)" = /bin/dash && ls /lib/ld-musl-* && ! find / -xdev -name "ld-linux*" -o -xdev -name "libc.so.6" | grep .'],
  },
};

/**
 * The tag for `kind`: a hash of this file's text, which holds every step of every recipe, so any change to how an
 * image is made gives a new tag (an edit to one recipe, or to a comment, rebuilds both: a minute, once). Not the
 * recipe functions' `toString()`: vitest rewrites a module's imports before running it, so the tests would get a
 * different tag than scripts/build-test-images.mjs prebuilt.
 */
export function testImageTag(kind) {
  recipeFor(kind);
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  return `asp-test-${kind}:${createHash('sha256').update(`${kind}\n${text}`).digest('hex').slice(0, 12)}`;
}

/**
 * Makes sure the image for `kind` is on the daemon: returns its tag and whether it was built now. Two processes
 * building the same tag at once waste a minute but do no harm: the same recipe, and the last import wins.
 */
export async function ensureTestImage(kind, { log = (line) => process.stderr.write(`test-images: ${line}\n`) } = {}) {
  const tag = testImageTag(kind);
  if (await imageExists(tag)) return { tag, built: false };
  log(`building ${tag}`);
  const work = mkdtempSync(path.join(os.tmpdir(), `asp-test-image-${kind}-`));
  try {
    const root = path.join(work, 'root');
    mkdirSync(root);
    const recipe = recipeFor(kind);
    await recipe.buildRoot(root, log, work);
    await importRoot(root, tag, recipe);
  } finally {
    removeWorkDir(work);
  }
  log(`built ${tag}`);
  return { tag, built: true };
}

async function importRoot(root, tag, recipe) {
  // Imported under a provisional tag and renamed only once the check passed: a tag that exists is taken as built,
  // so neither a broken image nor one whose check was interrupted may ever carry it.
  const provisional = `${tag}-unchecked-${process.pid}`;
  const owners = recipe.rootOwned ? ['--owner=0', '--group=0'] : [];
  const tar = spawn('tar', ['-C', root, '--numeric-owner', ...owners, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const changes = recipe.changes.flatMap((change) => ['--change', change]);
  // Piped through this process rather than handing tar's stdout to docker as its stdin: a child whose stdout went
  // to another child never emits 'close'.
  const imported = run('docker', ['import', ...changes, '-', provisional], { stdin: tar.stdout, what: `docker import ${provisional}`, hint: DOCKER_HINT });
  // When the import fails, tar fails too (broken pipe): the import's error is the one that says why.
  const [tarResult, importResult] = await Promise.allSettled([settle(tar, { what: 'tar of the image root' }), imported]);
  try {
    if (importResult.status === 'rejected') throw importResult.reason;
    if (tarResult.status === 'rejected') throw tarResult.reason;
    await run('docker', ['run', '--rm', '--network', 'none', provisional, ...recipe.check], { what: `the check of ${tag} (${recipe.check.join(' ')})` });
    await run('docker', ['tag', provisional, tag], { what: `docker tag ${provisional} ${tag}`, hint: DOCKER_HINT });
  } finally {
    // Drops only the provisional name once the image has its real tag, and the image itself when the check failed.
    await run('docker', ['image', 'rm', provisional], { what: `docker image rm ${provisional}` }).catch(() => undefined);
  }
}

function recipeFor(kind) {
  const recipe = Object.hasOwn(RECIPES, kind) ? RECIPES[kind] : undefined;
  if (!recipe) throw new Error(`unknown test image kind ${JSON.stringify(kind)}; known: ${TEST_IMAGE_KINDS.join(', ')}`);
  return recipe;
}

const DOCKER_HINT = 'is dockerd running? ../shared/tools/docker-engine-up starts one';

async function imageExists(tag) {
  try {
    await run('docker', ['image', 'inspect', '--format', '{{.Id}}', tag], { what: `docker image inspect ${tag}`, hint: DOCKER_HINT });
    return true;
  } catch (error) {
    if (/no such image/i.test(error.message)) return false;
    throw error;
  }
}

async function ensureDebootstrap(log) {
  await ensureDebianPackage('debootstrap', 'debootstrap', log);
}

/** Installs Debian's `pkg` unless `program` is on PATH already (needs root, as every image built here does). */
async function ensureDebianPackage(program, pkg, log) {
  if (await run('sh', ['-c', `command -v ${program}`], { what: `command -v ${program}` }).catch(() => '')) return;
  if (process.getuid?.() !== 0) throw new Error(`${program} is not installed and installing ${pkg} needs root: run \`sudo apt-get install ${pkg}\`, or prebuild the images as root`);
  log(`installing ${pkg}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const hint = 'is the Debian mirror reachable?';
  await run('apt-get', ['update', '-qq'], { env, what: 'apt-get update', hint });
  await run('apt-get', ['install', '-y', '-qq', pkg], { env, what: `apt-get install ${pkg}`, hint });
}

/** The mirror apt is configured with (deb822 sources first, then the classic list), as docker-engine-up finds it. */
function debianMirror() {
  const deb822 = readIfThere('/etc/apt/sources.list.d/debian.sources').match(/^URIs:\s*(\S+)/m);
  if (deb822?.[1]) return deb822[1];
  const classic = readIfThere('/etc/apt/sources.list').match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/m);
  if (classic?.[1]) return classic[1];
  throw new Error('no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list: debootstrap needs one');
}

/** Deletes `relative` inside `root`, refusing any path whose directory resolves outside it (a root holds absolute symlinks). */
function removeInsideRoot(root, relative) {
  const file = path.join(root, relative);
  let parent;
  try {
    parent = realpathSync(path.dirname(file));
  } catch {
    return; // its directory is not there, so neither is it
  }
  const realRoot = realpathSync(root);
  if (parent !== realRoot && !parent.startsWith(realRoot + path.sep)) throw new Error(`refusing to remove ${relative}: it resolves to ${parent}, outside the image root`);
  const target = path.join(parent, path.basename(file));
  if (existsOrLink(target)) rmSync(target, { recursive: true, force: true });
}

/**
 * Removes a build directory. debootstrap mounts /proc and /sys inside its target and a failed run can leave them
 * mounted; a recursive delete would then walk into the host's /proc and /sys, so those are unmounted first.
 */
function removeWorkDir(work) {
  const mounts = readIfThere('/proc/self/mountinfo')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((mountPoint) => mountPoint?.startsWith(work + '/'))
    .sort((a, b) => b.length - a.length);
  for (const mountPoint of mounts) {
    // Synchronous on purpose: this runs in a finally, and the delete below must not start before the unmount ends.
    const { status } = spawnSync('umount', ['--lazy', mountPoint], { stdio: 'ignore' });
    if (status !== 0) process.stderr.write(`test-images: umount ${mountPoint} failed (exit ${status})\n`);
  }
  if (readIfThere('/proc/self/mountinfo').includes(` ${work}/`)) {
    // Not thrown: this runs in a finally, and the build's own error is the one worth seeing.
    process.stderr.write(`test-images: ${work} still has mounts under it and was left in place; unmount them and remove it by hand\n`);
    return;
  }
  rmSync(work, { recursive: true, force: true });
}

function existsOrLink(file) {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

function linkTarget(file) {
  try {
    return readlinkSync(file);
  } catch {
    return undefined;
  }
}

function readIfThere(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function readTail(file) {
  return readIfThere(file).slice(-STDERR_TAIL).trim();
}

/**
 * Runs a command and resolves with its stdout. Rejects with an Error that names what failed, the exit code, the
 * tail of stderr and a hint at the fix; a missing program is reported as such rather than as ENOENT.
 */
function run(command, args, { cwd, env, stdin, what = command, hint } = {}) {
  const child = spawn(command, args, { cwd, env, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  if (stdin) {
    stdin.pipe(child.stdin);
    // A reader that quits early (a failed import) shows up as EPIPE here; its exit code says the rest.
    child.stdin.on('error', () => undefined);
  }
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
  return settle(child, { what, hint }).then(() => stdout.trim());
}

function settle(child, { what, hint }) {
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr = (stderr + chunk).slice(-STDERR_TAIL)));
  return new Promise((resolve, reject) => {
    child.on('error', (cause) => {
      const missing = cause.code === 'ENOENT' ? `${child.spawnfile} is not installed or not on PATH` : cause.message;
      reject(new Error(`${what} failed: ${missing}${hint ? ` (${hint})` : ''}`, { cause }));
    });
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      const status = signal ? `killed by ${signal}` : `exit ${code}`;
      reject(new Error(`${what} failed (${status}): ${stderr.trim() || 'no output on stderr'}${hint ? ` (${hint})` : ''}`));
    });
  });
}
