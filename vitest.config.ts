import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Files `npm test` leaves out unless STRATA_SLOW_TESTS=1 (`npm run
 * test:slow` runs just them): each builds whole Debian trees with mmdebstrap
 * from a cold apt cache (about 8 minutes on 2 cores), which would take CI
 * past its budget. They are acceptance tests all the same: run them before a
 * release and after touching recipes or builds (docs/decisions.md, "Slow tests").
 */
export const SLOW_TESTS = ['test/recipe-build.test.ts'];

// Tests mount loop devices, start servers and boot QEMU: give them time, and
// keep parallelism to the two cores CI has.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: [...configDefaults.exclude, ...(process.env.STRATA_SLOW_TESTS === '1' ? [] : SLOW_TESTS)],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
