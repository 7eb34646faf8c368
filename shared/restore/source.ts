import { Catalog } from '../catalog/catalog.ts';
import { createS3Client } from '../core/clients.ts';
import type { Config } from '../core/config.ts';
import { InvalidInputError } from '../core/errors.ts';
import * as z from '../core/schema.ts';

/**
 * Where a restore reads its backups: `primary`, the backup bucket, or `vault`,
 * the copy S3 replicates every object of it to, in another region (and perhaps
 * another account: serverless/vault.cjs), for when the backup bucket, its
 * region or its objects are lost or not to be trusted. Replication keeps each
 * object's key, bytes and version id, so the vault's catalog is the primary's:
 * the same manifests name the same archives with the same sha256.
 */
export const RESTORE_SOURCES = ['primary', 'vault'] as const;
export type RestoreSource = (typeof RESTORE_SOURCES)[number];

/** A restore input's `source`: `primary` when left out. */
export const restoreSourceInput = z._default(
  z.enum(RESTORE_SOURCES, {
    error: 'must be "primary" (the backup bucket; the default) or "vault" (its copy in the vault region)',
  }),
  'primary',
);

/** The catalogs a restore planner may read: the backup bucket's, and the vault's when the deployment has one. */
export interface RestoreCatalogs {
  primary: Catalog;
  vault: Catalog | undefined;
}

/** Both catalogs, each with an S3 client in its bucket's region (the SDK follows no redirect to another). */
export function restoreCatalogs(config: Config): RestoreCatalogs {
  const primary = new Catalog(createS3Client(config), config.BACKUP_BUCKET);
  const { VAULT_BUCKET, VAULT_REGION } = config;
  return {
    primary,
    vault:
      VAULT_BUCKET && VAULT_REGION
        ? new Catalog(createS3Client({ ...config, AWS_REGION: VAULT_REGION }), VAULT_BUCKET)
        : undefined,
  };
}

const NO_VAULT =
  'This deployment has no vault, so there is nothing to restore from there: deploy the vault stack and give the backup stack --param \'vaultRegion=…\' --param \'vaultKeyArn=…\' (README, "The vault"), or restore with "source": "primary". Nothing was changed.';

/** The catalog of `source`; InvalidInputError for the vault of a deployment without one. */
export function catalogOf(catalogs: RestoreCatalogs, source: RestoreSource): Catalog {
  if (source === 'primary') return catalogs.primary;
  if (!catalogs.vault) throw new InvalidInputError(NO_VAULT);
  return catalogs.vault;
}

/** The bucket the DB host fetches archives from for a plan of `source` (KB_BUCKET); InvalidInputError as catalogOf. */
export function bucketOf(config: Config, source: RestoreSource): string {
  return placeOf(config, source).bucket;
}

/** The bucket of `source` and its region (pgBackRest on the DB host reads its repository there); InvalidInputError as catalogOf. */
export function placeOf(config: Config, source: RestoreSource): { bucket: string; region: string } {
  if (source === 'primary') return { bucket: config.BACKUP_BUCKET, region: config.AWS_REGION };
  const { VAULT_BUCKET, VAULT_REGION } = config;
  if (!VAULT_BUCKET || !VAULT_REGION) throw new InvalidInputError(NO_VAULT);
  return { bucket: VAULT_BUCKET, region: VAULT_REGION };
}

/**
 * Where a restore's bytes came from, as the DB host reports it (host/common.sh
 * copy_source): `host`, the host's own copy (its sha256 the verified one), or
 * the bucket of the restore's source. A restore from the vault never uses the
 * host's copy: it reads the vault.
 */
export const readFromSchema = z.enum(['host', 'primary', 'vault']);
export type ReadFrom = z.infer<typeof readFromSchema>;

/** `readFrom` for a report: `Read from: …` of the archive at `key`. */
export function describeReadFrom(readFrom: ReadFrom, key: string): string {
  const where = {
    host: `the host's own copy of ${key}, its sha256 the verified one`,
    primary: `${key} in the backup bucket`,
    vault: `${key} in the vault`,
  }[readFrom];
  return `Read from: ${where}`;
}
