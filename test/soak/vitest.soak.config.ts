import { defineConfig } from 'vitest/config';

// The soak (issue 21): long batches watched from outside, kept out of `npm test` (whose include is
// test/**/*.test.ts) and run by `npm run test:soak` at full size, and by .ci/run shortened (ASP_SOAK_TASKS,
// ASP_SOAK_HEAVY_TASKS). One file at a time, like the integration suites: they share the daemon and the CPUs.
export default defineConfig({
  test: {
    include: ['test/soak/**/*.soak.ts'],
    fileParallelism: false,
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 30 * 60_000,
    hookTimeout: 300_000,
  },
});
