import type { Catalog } from '../catalog/catalog.ts';
import {
  type BackupKind,
  isLegacyKind,
  KIND_PREFIX,
  kindPrefix,
  LEGACY_DUMP_KINDS,
  type LegacyDumpKind,
  MANIFEST_SUFFIX,
} from '../catalog/keys.ts';
import { legacyArchiveNote } from '../catalog/legacy.ts';
import type { Manifest } from '../catalog/manifest.ts';
import { InvalidInputError, NotFoundError } from '../core/errors.ts';

/**
 * The verified backup an input names: `latest` (the newest verified of the first
 * kind), a run id, or a key, among the given kinds. An unknown backup, or one
 * that is not verified, is refused with the newest usable ones named. A legacy
 * row-window archive (keys.ts's LEGACY_DUMP_KINDS) is refused whoever asks, with
 * the way to a point in time: the point-in-time-recovery workflow, from
 * pgBackRest's backups and WAL.
 */
export async function findBackup(
  catalog: Catalog,
  kinds: readonly [BackupKind, ...BackupKind[]],
  target: string,
  database: string | null,
  backup: string,
): Promise<Manifest> {
  const legacyKind = kinds.find(isLegacyKind);
  if (legacyKind) refuseLegacy(legacyKind, kindPrefix(legacyKind, target, database));
  const [first] = kinds;
  const what = `${first} backup of ${database ?? target}${database ? ` on ${target}` : ''}`;
  const keys = await catalog.manifestKeys(first, target, database);
  if (backup === 'latest') {
    const newest = await catalog.newestVerified(keys);
    if (!newest) {
      throw new NotFoundError(
        `There is no verified ${what}; run one first, or name another ${database ? 'database' : 'target'}. Nothing was changed.`,
      );
    }
    return newest;
  }
  const named = (k: string) =>
    k.includes(`_${backup}.`) || k === backup || k === `${backup}${MANIFEST_SUFFIX}`;
  // A key names its kind: one under a legacy prefix is refused without a listing.
  const byKey = LEGACY_DUMP_KINDS.find((kind) => backup.startsWith(`${KIND_PREFIX[kind]}/`));
  if (byKey) refuseLegacy(byKey, backup.replace(MANIFEST_SUFFIX, ''));
  let key = keys.find(named);
  for (const kind of kinds.slice(1)) key ??= (await catalog.manifestKeys(kind, target, database)).find(named);
  if (!key && database !== null) {
    // A run id of a legacy archive: said so, rather than "no such backup".
    for (const kind of LEGACY_DUMP_KINDS) {
      const legacy = (await catalog.manifestKeys(kind, target, database)).find(named);
      if (legacy) refuseLegacy(kind, legacy.replace(MANIFEST_SUFFIX, ''));
    }
  }
  if (!key) {
    const recent = keys
      .slice(-5)
      .map((k) => k.replace(MANIFEST_SUFFIX, ''))
      .reverse();
    throw new NotFoundError(
      `No ${kinds.length > 1 ? `${kinds.slice(0, -1).join(', ')} or ${kinds.at(-1)}` : first} backup "${backup}" of ${database ?? target}. The newest are: ${recent.join(', ') || '(none)'}. Use one of them, or "latest". Nothing was changed.`,
    );
  }
  const manifest = await catalog.readManifest(key);
  if (manifest.verification.state !== 'verified') {
    throw new InvalidInputError(
      `The backup ${manifest.archive.key} is ${manifest.verification.state}${manifest.verification.detail ? ` (${manifest.verification.detail})` : ''}; restore only from a verified backup. Nothing was changed.`,
    );
  }
  return manifest;
}

function refuseLegacy(kind: LegacyDumpKind, what: string): never {
  throw new InvalidInputError(`${legacyArchiveNote(kind, what)} Nothing was changed.`);
}
