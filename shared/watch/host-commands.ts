import { scratchDirectoryOf } from '../backup/physical-restore-test.ts';
import { walPlanSchema } from '../backup/wal-plan.ts';
import type { Config, Target } from '../core/config.ts';
import * as z from '../core/schema.ts';
import { pgbackrestOf, pgbackrestScriptParams } from '../host/pgbackrest-conf.ts';
import { hostCommand, postgresParams } from '../host/scripts.ts';
import { archiverCheckPlanSchema } from './archiving.ts';
import { diskCheckPlanSchema } from './monitoring.ts';
import { localCheckPlanSchema } from './verification.ts';

/** host/wal-archiving.sh on the target's cluster: `age` reads the archiver only, `full` the log and repository too. */
const walArchivingParams = (config: Config, target: Target, detail: 'age' | 'full') => ({
  ...pgbackrestScriptParams(config, target),
  KB_DETAIL: detail,
  KB_PG_DATA: pgbackrestOf(target).dataDirectory,
});

/**
 * The host commands of the watch workflows: the host's copies against their
 * sha256, pgBackRest's verify, the backup disk's usage, and the WAL archiver
 * (every minute its age only, hourly with the failure's reason and the repository).
 */
export const WATCH_HOST_COMMANDS = {
  'check-local-copies': hostCommand({
    request: z.object({ script: z.literal('check-local-copies'), plan: localCheckPlanSchema }),
    script: 'check-local-copies',
    // Where leftovers are looked for comes from config, never from the plan.
    params: (_config, target, { plan }) => ({
      KB_COPIES: plan.copies.map((c) => `${c.path} ${c.sha256}`).join('\n'),
      KB_BACKUP_DIR: target.backupDir,
      KB_DATABASE: target.database,
      // Where its side clusters are (restore tests, point-in-time recoveries): a target with pgBackRest only.
      KB_SCRATCH_ROOT: target.pgbackrest ? scratchDirectoryOf(target) : '',
      KB_STANZA: target.name,
      ...postgresParams(target),
    }),
  }),
  'disk-usage': hostCommand({
    request: z.object({ script: z.literal('disk-usage'), plan: diskCheckPlanSchema }),
    script: 'disk-usage',
    // The configured directory, not the plan's: what runs on the host comes from config.
    params: (_config, target) => ({ KB_BACKUP_DIR: target.backupDir }),
  }),
  /** pgbackrest verify of the target's whole repository: every backup file's and WAL segment's checksum. */
  'pgbackrest-verify': hostCommand({
    request: z.object({ script: z.literal('pgbackrest-verify'), plan: walPlanSchema }),
    script: 'pgbackrest-verify',
    params: pgbackrestScriptParams,
  }),
  'wal-archive-age': hostCommand({
    request: z.object({ script: z.literal('wal-archive-age'), plan: archiverCheckPlanSchema }),
    script: 'wal-archiving',
    params: (config, target) => walArchivingParams(config, target, 'age'),
  }),
  'wal-archiving': hostCommand({
    request: z.object({ script: z.literal('wal-archiving'), plan: archiverCheckPlanSchema }),
    script: 'wal-archiving',
    params: (config, target) => walArchivingParams(config, target, 'full'),
  }),
};
