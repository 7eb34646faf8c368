import type { Catalog } from '../catalog/catalog.ts';
import { type BackupKind, MANIFEST_SUFFIX } from '../catalog/keys.ts';
import type { Manifest } from '../catalog/manifest.ts';
import { InvalidInputError, NotFoundError } from '../core/errors.ts';

/**
 * The verified backup an input names: `latest` (the newest verified of the first
 * kind), a run id, or a key, among the given kinds. An unknown backup, or one
 * that is not verified, is refused with the newest usable ones named.
 */
export async function findBackup(
  catalog: Catalog,
  kinds: readonly [BackupKind, ...BackupKind[]],
  target: string,
  database: string | null,
  backup: string,
): Promise<Manifest> {
  const [first] = kinds;
  const what = `${first === 'full' ? 'full' : first} backup of ${database ?? target}${database ? ` on ${target}` : ''}`;
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
  let key = keys.find(named);
  for (const kind of kinds.slice(1)) key ??= (await catalog.manifestKeys(kind, target, database)).find(named);
  if (!key) {
    const recent = keys
      .slice(-5)
      .map((k) => k.replace(MANIFEST_SUFFIX, ''))
      .reverse();
    throw new NotFoundError(
      `No ${kinds.join(' or ')} backup "${backup}" of ${database ?? target}. The newest are: ${recent.join(', ') || '(none)'}. Use one of them, or "latest". Nothing was changed.`,
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
