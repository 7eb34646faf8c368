import type { BadObject, Catalog } from '../catalog/catalog.ts';
import { DUMP_KINDS, FILE_KINDS, kindPrefix, MANIFEST_SUFFIX } from '../catalog/keys.ts';
import { type Leftover, orphansAmong } from '../catalog/leftovers.ts';
import { physicalRecordKeys, readPhysicalRecord } from '../catalog/physical.ts';
import { readRecoveryRecord, recoveryRecordKeys } from '../catalog/recoveries.ts';
import { POINT_IN_TIME_DAYS } from '../catalog/retention.ts';
import type { Config } from '../core/config.ts';
import { DAY_MS, utcDay } from '../core/time.ts';

/**
 * The catalog's own soundness, for the daily verification: every object of it
 * that does not parse (a manifest, a physical backup's or a recovery's record),
 * which every other reader passes over with a log line only, and every archive
 * left without its manifest. It reads each manifest of the kinds made now
 * (their retention bounds them: a few hundred small objects a target), the
 * physical records of the point-in-time window and a week more, and the
 * measured recoveries; the legacy row-window catalogs are listed elsewhere and
 * never read.
 */
export async function checkCatalog(
  config: Config,
  catalog: Catalog,
  now: Date,
): Promise<{ bad: BadObject[]; orphans: (Leftover & { target: string })[] }> {
  const bad: BadObject[] = [];
  const orphans: (Leftover & { target: string })[] = [];
  const collect = (object: BadObject) => bad.push(object);
  for (const target of config.BACKUP_TARGETS) {
    const catalogs = [
      ...(target.databases ?? [target.database]).flatMap((database) =>
        DUMP_KINDS.map((kind) => ({ kind, database })),
      ),
      ...FILE_KINDS.map((kind) => ({ kind, database: null })),
    ];
    for (const { kind, database } of catalogs) {
      const objects = await catalog.listObjects(kindPrefix(kind, target.name, database));
      for (const orphan of orphansAmong(objects, now)) orphans.push({ ...orphan, target: target.name });
      const manifests = objects.map((o) => o.key).filter((k) => k.endsWith(MANIFEST_SUFFIX));
      await catalog.readEach(manifests, (k) => catalog.readManifest(k), collect);
    }
    // The records of the point-in-time window and a week before it: what a recovery or a drill may build on.
    await catalog.readEach(
      await physicalRecordKeys(
        catalog,
        target.name,
        utcDay(now.getTime() - (POINT_IN_TIME_DAYS + 7) * DAY_MS),
      ),
      (k) => readPhysicalRecord(catalog, k),
      collect,
    );
    await catalog.readEach(
      await recoveryRecordKeys(catalog, target.name),
      (k) => readRecoveryRecord(catalog, k),
      collect,
    );
  }
  return { bad, orphans };
}
