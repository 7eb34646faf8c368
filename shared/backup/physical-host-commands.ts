import { pgbackrestLabel } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { pgbackrestParams } from '../host/pgbackrest-conf.ts';
import { hostCommand, postgresParams } from '../host/scripts.ts';
import { physicalPlanSchema } from './physical-plan.ts';

/**
 * The host commands of a physical backup run: the backup and its verify, and
 * the expiry once its tests passed. Both run pgBackRest on the target's stanza
 * with the conf the project renders (common.sh `pgbr`).
 */
export const PHYSICAL_HOST_COMMANDS = {
  'pgbackrest-backup': hostCommand({
    request: z.object({ script: z.literal('pgbackrest-backup'), plan: physicalPlanSchema }),
    script: 'pgbackrest-backup',
    params: (config, target, { plan }) => ({
      ...postgresParams(target),
      ...pgbackrestParams(config, target),
      KB_TYPE: plan.kind === 'full' ? 'full' : 'incr',
      KB_BASE_LABEL: plan.base ?? '',
    }),
  }),
  'pgbackrest-expire': hostCommand({
    request: z.object({
      script: z.literal('pgbackrest-expire'),
      plan: physicalPlanSchema,
      /** The newest full backup that passed verification and its restore test: never expired. */
      keep: pgbackrestLabel,
      /**
       * Keep this many full backups instead of the configured window (POINT_IN_TIME_DAYS
       * in the rendered conf), for this run only: the tests' way to expire within
       * seconds. The workflow never passes it.
       */
      keepFullCount: z.optional(z.int().check(z.gte(1), z.lte(9999999))),
    }),
    script: 'pgbackrest-expire',
    params: (config, target, { keep, keepFullCount }) => ({
      ...postgresParams(target),
      ...pgbackrestParams(config, target),
      KB_KEEP_LABEL: keep,
      KB_KEEP_FULL_COUNT: keepFullCount === undefined ? '' : String(keepFullCount),
    }),
  }),
};
