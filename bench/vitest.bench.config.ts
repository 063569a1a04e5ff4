import { defineConfig } from 'vitest/config';

// Benchmarks that need the test helpers (the Kubernetes API stand-in) run under vitest, one file at a time, and print
// their figures; `npm test` never picks them up (its include is test/**/*.test.ts).
export default defineConfig({
  test: {
    include: ['bench/**/*.bench.ts'],
    fileParallelism: false,
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 30 * 60_000,
    hookTimeout: 300_000,
  },
});
