import { walPlanSchema } from '../backup/wal-plan.ts';
import * as z from '../core/schema.ts';
import { pgbackrestScriptParams } from '../host/pgbackrest-conf.ts';
import { hostCommand } from '../host/scripts.ts';
import { diskCheckPlanSchema } from './monitoring.ts';
import { localCheckPlanSchema } from './verification.ts';

/** The host commands of the watch workflows: the host's copies against their sha256, pgBackRest's verify, the backup disk's usage. */
export const WATCH_HOST_COMMANDS = {
  'check-local-copies': hostCommand({
    request: z.object({ script: z.literal('check-local-copies'), plan: localCheckPlanSchema }),
    script: 'check-local-copies',
    params: (_config, _target, { plan }) => ({
      KB_COPIES: plan.copies.map((c) => `${c.path} ${c.sha256}`).join('\n'),
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
};
