import { defineConfig } from 'vitest/config';

// Tests mount loop devices, start servers and boot QEMU: give them time, and
// keep parallelism to the two cores CI has.
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
