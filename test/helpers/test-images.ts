import { ensureTestImage as ensureBuilt, type TestImageKind } from '../../scripts/test-images.mjs';

/**
 * A local image that is not asp's (issue 16): `python` is Debian bookworm with python3 and pytest but no bash, git
 * or node, and with a hostile USER/WORKDIR/ENV that asp must override; `busybox` is busybox-static with no libc;
 * `musl` is musl's loader with a dash built against it (and busybox for the other commands), no glibc.
 * Built from Debian's packages the first time (the python one takes about a minute and needs root) and then found
 * on the daemon by its tag, which changes whenever the recipe in scripts/test-images.mjs does. Call it from a
 * `beforeAll`: the hook timeout (300 s) covers a cold build, a test timeout does not.
 */
export async function ensureTestImage(kind: TestImageKind): Promise<string> {
  const { tag } = await ensureBuilt(kind);
  return tag;
}
