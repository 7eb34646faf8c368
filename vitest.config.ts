import { basename } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The integration files that take longest, longest first (vitest's per-file
 * durations on this machine in a fresh clone's CI, 2026-12-01). Vitest orders
 * files by their last durations when it has them; a fresh clone (CI) has none,
 * and vitest then starts the largest files first, which once left the longest
 * to end the run alone. A file missing here only starts later.
 */
const LONGEST_FIRST = [
  'readme-examples',
  'pitr-side-by-side',
  'point-in-time-recovery',
  'physical-backup',
  'physical-restore-test',
  'drill',
  'template',
  'recovery-drill',
  'verification',
  'vault',
  'backup-workflow',
  'restore',
  'monitoring',
  'wal-archiving',
  'pitr-faults',
  'limits',
];

class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    if (files.every((file) => this.ctx.cache.getTestSpecificationResult(file))) return sorted;
    const rank = (file: TestSpecification) => {
      const at =
        file.project.name === 'integration' ? LONGEST_FIRST.indexOf(basename(file.moduleId, '.test.ts')) : -1;
      return at < 0 ? LONGEST_FIRST.length : at;
    };
    // Stable: the files not listed keep vitest's order after the listed ones.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}

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
    sequence: { sequencer: LongestFirst },
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
