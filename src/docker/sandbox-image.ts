import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import tarStream from 'tar-stream';
import { AspError } from '../core/asp-error.js';
import type { DockerPort } from './port.js';
import { runtimeVersion } from './runtime-volume.js';

export const IMAGE_REPOSITORY = 'asp-sandbox';
export const DEFAULT_BASE_IMAGE = 'node:20-bookworm-slim';
/** The label on asp's own image (and on what `asp image build` makes): it carries the runner, no runtime needed. */
export const ASP_IMAGE_LABEL = 'asp.image';
export const ASP_IMAGE_KIND = 'sandbox';

/** The in-sandbox programs, each bundled into one file by `npm run build` (scripts/post-build.mjs). */
const IMAGE_PROGRAMS = ['dist/image/asp-sandbox.cjs', 'dist/image/asp-agent.mjs', 'dist/image/asp-runtime-pack.mjs'];

/** The files the image is built from, relative to the package root. Their hash is the image tag. */
function contextFiles(root: string): string[] {
  // The ASP pipeline's agent prompts are plain files next to the runner (prompts/asp/*.md).
  const promptsDir = path.join(root, 'prompts', 'asp');
  const prompts = existsSync(promptsDir)
    ? readdirSync(promptsDir)
        .filter((name) => name.endsWith('.md'))
        .sort()
        .map((name) => `prompts/asp/${name}`)
    : [];
  return ['Dockerfile', ...IMAGE_PROGRAMS, ...prompts];
}

export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && isAspManifest(readFileSync(manifest, 'utf8'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new AspError('IMAGE_UNAVAILABLE', 'cannot find the asp-runner package root', 'reinstall asp-runner');
    dir = parent;
  }
}

export interface ImageContext {
  tag: string;
  files: Array<{ name: string; content: Buffer }>;
  baseImage: string;
}

/** Contexts already read in this process: the files do not change under a running asp, and a batch asks per task. */
const contexts = new Map<string, ImageContext>();
/** Tags each daemon was seen to have in this process: a batch checks the image once, not once per task. */
const present = new WeakMap<DockerPort, Set<string>>();

export function imageContext(root = packageRoot(), baseImage = DEFAULT_BASE_IMAGE): ImageContext {
  const key = `${root}\0${baseImage}`;
  const known = contexts.get(key);
  if (known) return known;
  const context = readImageContext(root, baseImage);
  contexts.set(key, context);
  return context;
}

function readImageContext(root: string, baseImage: string): ImageContext {
  const hash = createHash('sha256').update(`base=${baseImage}\n`);
  const files = contextFiles(root).map((name) => {
    const file = path.join(root, name);
    if (!existsSync(file)) {
      throw new AspError('IMAGE_UNAVAILABLE', `cannot build the sandbox image: ${name} is missing`, 'run `npm run build` first');
    }
    const content = readFileSync(file);
    hash.update(`${name}\n`).update(content);
    return { name, content };
  });
  return { tag: `${IMAGE_REPOSITORY}:${hash.digest('hex').slice(0, 12)}`, files, baseImage };
}

function contextTar(context: ImageContext): Readable {
  const pack = tarStream.pack();
  // When the daemon is not there, the failed build request destroys the pack and every entry still queued in it
  // with the same error. The build's own rejection reports it; without these listeners each entry would report it
  // again as an uncaught 'error' event, and asp would crash with a stack trace instead of saying what to do.
  pack.on('error', () => {});
  for (const file of context.files) pack.entry({ name: file.name, mode: 0o644 }, file.content).on('error', () => {});
  pack.finalize();
  // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- tar-stream types its pack as a streamx stream, which Node's stream functions (pipe, pipeline) take as they do their own
  return pack as unknown as Readable;
}

export async function buildSandboxImage(docker: DockerPort, context: ImageContext, onProgress: (line: string) => void): Promise<void> {
  await docker.buildImage(
    contextTar(context),
    {
      tag: context.tag,
      buildArgs: {
        BASE_IMAGE: context.baseImage,
        ASP_RUNTIME_VERSION: runtimeVersion(context.tag),
        // Only the default image is a runtime's source (runtime-volume.ts): another base may go without one.
        ASP_RUNTIME_REQUIRED: context.baseImage === DEFAULT_BASE_IMAGE ? '1' : '0',
      },
      labels: { [ASP_IMAGE_LABEL]: ASP_IMAGE_KIND },
    },
    onProgress,
  );
}

/**
 * The image a task runs in: `--image` when given (it must exist), else the sandbox image of this build,
 * built on the spot when missing or out of date (its tag is the content hash of what it is built from).
 */
export async function ensureSandboxImage(docker: DockerPort, options: { image?: string | undefined; onBuildStart?: (tag: string) => void; onProgress?: (line: string) => void }): Promise<string> {
  let seen = present.get(docker);
  if (!seen) present.set(docker, (seen = new Set()));
  if (options.image) {
    if (seen.has(options.image) || (await docker.imageExists(options.image))) return remember(seen, options.image);
    throw new AspError('IMAGE_UNAVAILABLE', `image ${options.image} is not present in the Docker daemon`, 'build or load it first, or leave out --image to use the asp sandbox image');
  }
  const context = imageContext();
  if (seen.has(context.tag) || (await docker.imageExists(context.tag))) return remember(seen, context.tag);
  options.onBuildStart?.(context.tag);
  await buildSandboxImage(docker, context, options.onProgress ?? (() => {}));
  return remember(seen, context.tag);
}

function remember(seen: Set<string>, tag: string): string {
  seen.add(tag);
  return tag;
}

/** Whether a package.json is asp-runner's own; one that does not parse is some other package's. */
function isAspManifest(text: string): boolean {
  try {
    const json: unknown = JSON.parse(text);
    return typeof json === 'object' && json !== null && 'name' in json && json.name === 'asp-runner';
  } catch {
    return false;
  }
}
