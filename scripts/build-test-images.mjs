// Prebuilds the images that are not asp's (issue 16), so a CI job can pay for them before the tests do.
// Usage: node scripts/build-test-images.mjs [python|busybox|musl ...]   (default: all; the python image needs root)
// Prints one JSON object on stdout (tag, whether it was built now, seconds, size per image); progress goes to stderr.
import { execFileSync } from 'node:child_process';
import { ensureTestImage, TEST_IMAGE_KINDS } from './test-images.mjs';

const kinds = process.argv.length > 2 ? process.argv.slice(2) : TEST_IMAGE_KINDS;
const images = [];
try {
  for (const kind of kinds) {
    const started = performance.now();
    const { tag, built } = await ensureTestImage(kind);
    const seconds = Math.round((performance.now() - started) / 100) / 10;
    const sizeBytes = Number(execFileSync('docker', ['image', 'inspect', '--format', '{{.Size}}', tag], { encoding: 'utf8' }).trim());
    images.push({ kind, tag, built, seconds, sizeBytes });
  }
} catch (error) {
  process.stderr.write(`build-test-images: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
process.stdout.write(JSON.stringify({ images }, null, 2) + '\n');
