import { defineConfig } from 'vitest/config';

// Two tiers: `npm run test:unit` runs the logic alone (no PostgreSQL, S3 or
// packaging) in seconds; `npm test` runs both, the integration tier against real
// PostgreSQL, bash, a local S3 and the packaged template.
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 90_000,
    hookTimeout: 180_000,
    // The machine has two cores; the integration files each run PostgreSQL and S3,
    // and spend much of their time waiting on them (WAL archiving's minute,
    // pgBackRest's uploads, the runner's Wait states): more files than cores keep
    // both busy meanwhile. With 60 files, on fresh clones: 653 s with three; 571 s
    // and 667 s with four (the machine is noisy: no clear gain, no timeout).
    maxWorkers: 4,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/*.test.ts'],
          // The seeded sample cluster, made once for every world (test/support/environment.ts).
          globalSetup: ['test/support/seeded-cluster.ts'],
        },
      },
    ],
  },
});
