export type TestImageKind = 'python' | 'busybox' | 'musl';
export const TEST_IMAGE_KINDS: readonly TestImageKind[];
export function testImageTag(kind: TestImageKind): string;
export function ensureTestImage(kind: TestImageKind, options?: { log?: (line: string) => void }): Promise<{ tag: string; built: boolean }>;
