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
import { type Manifest, restoreTestFailed } from '../catalog/manifest.ts';
import { InvalidInputError, NotFoundError } from '../core/errors.ts';

/**
 * The verified backup an input names: `latest` (the newest usable of the first
 * kind: verified, and not failed its restore test), a run id, or a key, among the
 * given kinds. An unknown backup, or one that is not verified, is refused with
 * the newest ones named; one that failed its restore test is refused unless
 * `acceptFailedRestoreTest` confirms it, saying what failed. A legacy
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
  options: { acceptFailedRestoreTest?: boolean } = {},
): Promise<Manifest> {
  const legacyKind = kinds.find(isLegacyKind);
  if (legacyKind) refuseLegacy(legacyKind, kindPrefix(legacyKind, target, database));
  const [first] = kinds;
  const what = `${first} backup of ${database ?? target}${database ? ` on ${target}` : ''}`;
  const keys = await catalog.manifestKeys(first, target, database);
  if (backup === 'latest') {
    const { usable, verified } = await catalog.newestUsable(keys);
    if (!usable) {
      throw new NotFoundError(
        verified
          ? `There is no ${what} that is verified and has not failed its restore test: the newest verified one, ${verified.runId}, failed it. Name it with "backup": "${verified.runId}" to see why. Nothing was changed.`
          : `There is no verified ${what}; run one first, or name another ${database ? 'database' : 'target'}.${await otherDatabases(catalog, kinds, target, database, keys.length)} Nothing was changed.`,
      );
    }
    return usable;
  }
  const named = (k: string) =>
    k.includes(`_${backup}.`) || k === backup || k === `${backup}${MANIFEST_SUFFIX}`;
  // A key names its kind: one under a legacy prefix is refused without a listing.
  const byKey = LEGACY_DUMP_KINDS.find((kind) => backup.startsWith(`${KIND_PREFIX[kind]}/`));
  if (byKey) refuseLegacy(byKey, backup.replace(MANIFEST_SUFFIX, ''));
  // Each kind is listed once, and only until the backup is found; a refusal lists from what was read.
  const listed = [keys];
  let key = keys.find(named);
  for (const kind of kinds.slice(1)) {
    if (key) break;
    const more = await catalog.manifestKeys(kind, target, database);
    listed.push(more);
    key = more.find(named);
  }
  if (!key && database !== null) {
    // A run id of a legacy archive: said so, rather than "no such backup".
    for (const kind of LEGACY_DUMP_KINDS) {
      const legacy = (await catalog.manifestKeys(kind, target, database)).find(named);
      if (legacy) refuseLegacy(kind, legacy.replace(MANIFEST_SUFFIX, ''));
    }
  }
  if (!key) {
    const kindNames = kinds.length > 1 ? `${kinds.slice(0, -1).join(', ')} or ${kinds.at(-1)}` : first;
    const recent = await newestListed(catalog, listed.flat());
    throw new NotFoundError(
      `No ${kindNames} backup "${backup}" of ${database ?? target}; this restore takes ${kindNames} backups. ${recent.length ? `The newest are: ${recent.join('; ')}. Use one of them, or "latest".` : `There are none.${await otherDatabases(catalog, kinds, target, database, 0)}`} Nothing was changed.`,
    );
  }
  const manifest = await catalog.readManifest(key);
  if (manifest.verification.state !== 'verified') {
    throw new InvalidInputError(
      `The backup ${manifest.archive.key} is ${manifest.verification.state}${manifest.verification.detail ? ` (${manifest.verification.detail})` : ''}; restore only from a verified backup. Nothing was changed.`,
    );
  }
  const test = manifest.verification.restoreTest;
  if (test?.state === 'failed' && !options.acceptFailedRestoreTest) {
    // The detail was redacted when the restore test recorded it (shared/backup/stages.ts).
    throw new InvalidInputError(
      `The backup ${manifest.archive.key} failed its restore test at ${test.checkedAt}: ${test.detail.slice(0, 600)} It did not restore as it was dumped, so "latest" and the drills skip it. Pick another backup (the newest usable is what "latest" gives), or, if this one is what you need (the failure lay in the restore test's surroundings, say), add "acceptFailedRestoreTest": true to the input: the restore still checks every table's rows in its staging database before it replaces anything. Nothing was changed.`,
    );
  }
  return manifest;
}

/**
 * The newest `count` of `keys` (manifest keys of any kinds), newest first, each
 * with its state when it is not plainly usable: "restore test failed: needs
 * acceptFailedRestoreTest", or its verification state. Reads `count` manifests.
 */
async function newestListed(catalog: Catalog, keys: readonly string[], count = 5): Promise<string[]> {
  // Keys of different kinds sort by the run's start: the stamp in their file name (…_<YYYYMMDDTHHMMSSZ>_<id>).
  const byStart = (k: string) => /\d{8}T\d{6}Z/.exec(k)?.[0] ?? '';
  const newest = [...keys]
    .sort((a, b) => byStart(a).localeCompare(byStart(b)))
    .slice(-count)
    .reverse();
  return Promise.all(
    newest.map(async (k) => {
      const name = k.replace(MANIFEST_SUFFIX, '');
      const m = await catalog.readManifest(k).catch(() => undefined);
      if (!m) return `${name} (unreadable manifest)`;
      if (m.verification.state !== 'verified') return `${name} (${m.verification.state}: not restorable)`;
      if (restoreTestFailed(m)) return `${name} (restore test failed: needs "acceptFailedRestoreTest": true)`;
      return name;
    }),
  );
}

/**
 * When `database` has no backups of `kinds` on `target` (`found` = 0), the
 * databases that do, as a sentence to append (starting with a space); else "".
 */
async function otherDatabases(
  catalog: Catalog,
  kinds: readonly BackupKind[],
  target: string,
  database: string | null,
  found: number,
): Promise<string> {
  if (database === null || found > 0) return '';
  const names = new Set<string>();
  for (const kind of kinds)
    for (const n of await catalog.childNames(kindPrefix(kind, target, null))) names.add(n);
  names.delete(database);
  return names.size
    ? ` Backups exist for ${[...names].join(', ')} on target ${target}: did you mean one of them?`
    : ` No database on target ${target} has a backup yet.`;
}

function refuseLegacy(kind: LegacyDumpKind, what: string): never {
  throw new InvalidInputError(`${legacyArchiveNote(kind, what)} Nothing was changed.`);
}
