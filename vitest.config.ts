import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 90_000,
    hookTimeout: 180_000,
    // The machine has two cores; the end-to-end files each run PostgreSQL and S3.
    maxWorkers: 2,
  },
});
