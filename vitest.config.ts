import { defineConfig } from 'vitest/config';

// Tests mount loop devices, start servers, build Debian trees and boot QEMU:
// give them time, and keep parallelism to the two cores CI has. Every test,
// the recipe builds from a cold apt cache included, runs in `npm test`
// (docs/decisions.md, "The test budget").
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
