import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ASP_VERSION } from '../../src/core/version.js';

describe("asp's version", () => {
  it('is the package version: what asp --version prints and every trace carries as service.version', () => {
    const manifest = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    expect(ASP_VERSION).toBe(manifest.version);
  });
});
