import type { Catalog } from '../catalog/catalog.ts';
import { PHYSICAL_KINDS, type PhysicalKind, physicalRecordKey, runId } from '../catalog/keys.ts';
import { newestUsablePhysicalBackup } from '../catalog/physical.ts';
import type { Config, Target } from '../core/config.ts';
import { objectKey, pgbackrestLabel, runIdentifier, targetName } from '../core/identifiers.ts';
import * as z from '../core/schema.ts';
import { pgbackrestOff } from '../host/pgbackrest-conf.ts';

/**
 * One pgBackRest backup run of a target's whole cluster, planned by PlanBackup
 * beside the logical dumps. Its `engine` routes it in the workflow's Map
 * (RouteRun); the dump plans carry no engine.
 */
export const physicalPlanSchema = z.object({
  engine: z.literal('pgbackrest'),
  /** What the run asks pgBackRest for; an incremental with nothing to build on becomes a full (recorded as such). */
  kind: z.enum(PHYSICAL_KINDS),
  target: targetName,
  runId: runIdentifier,
  executionId: z.string().check(z.minLength(1)),
  startedAt: z.iso.datetime({ offset: true }),
  bucket: z.string().check(z.minLength(3)),
  /** Where RecordPhysicalBackup writes the backup's record (shared/catalog/physical.ts). */
  recordKey: objectKey,
  /**
   * An incremental's base: the newest backup of the target that passed
   * verification and its restore test, by the catalog. pgBackRest builds an
   * incremental on the repository's newest backup; when that is not this one (it
   * failed a check, or the catalog does not know it), the host takes a full
   * instead, so that a backup that failed is the base of nothing. Null: a full.
   */
  base: z.nullable(pgbackrestLabel),
});

export type PhysicalPlan = z.infer<typeof physicalPlanSchema>;

/**
 * A target whose physical backups are off (no pgbackrest block in
 * BACKUP_TARGETS): the run shows as skipped in the execution's output, with
 * what to do; a full's logical dumps run as usual. The daily verification
 * reports such a target every day (shared/watch/verification.ts).
 */
export interface PhysicalPlanOff {
  engine: 'pgbackrest';
  kind: PhysicalKind;
  target: string;
  runId: string;
  off: string;
}

/** The physical run of each target: planned when it has pgBackRest settings, shown as off when not. */
export async function physicalRuns(
  config: Config,
  catalog: Catalog,
  targets: readonly Target[],
  run: { kind: PhysicalKind; executionId: string; startedAt: string },
): Promise<(PhysicalPlan | PhysicalPlanOff)[]> {
  const iso = new Date(run.startedAt).toISOString();
  return Promise.all(
    targets.map(async (target): Promise<PhysicalPlan | PhysicalPlanOff> => {
      // Its own id, apart from the target's dumps in the same execution.
      const id = runId(iso, `${run.executionId}/${target.name}/pgbackrest`);
      if (!target.pgbackrest) {
        const off = pgbackrestOff(
          target,
          run.kind === 'full'
            ? 'no full physical backup was taken (its logical dumps ran as usual)'
            : 'no incremental backup was taken: nothing but the daily logical dump protects its data',
        );
        return { engine: 'pgbackrest', kind: run.kind, target: target.name, runId: id, off };
      }
      return {
        engine: 'pgbackrest',
        kind: run.kind,
        target: target.name,
        runId: id,
        executionId: run.executionId,
        startedAt: run.startedAt,
        bucket: config.BACKUP_BUCKET,
        recordKey: physicalRecordKey(target.name, iso, id),
        base:
          run.kind === 'incremental'
            ? ((await newestUsablePhysicalBackup(catalog, target.name))?.label ?? null)
            : null,
      };
    }),
  );
}
