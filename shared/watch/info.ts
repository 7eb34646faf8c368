import type { S3Client } from '@aws-sdk/client-s3';
import { type Catalog, objectsUnder } from '../catalog/catalog.ts';
import {
  type BackupKind,
  DUMP_KINDS,
  FILE_KINDS,
  kindPrefix,
  MANIFEST_SUFFIX,
  manifestKey,
} from '../catalog/keys.ts';
import { type LegacyListing, legacyArchives } from '../catalog/legacy.ts';
import { isUsable, type Manifest, micros } from '../catalog/manifest.ts';
import { listPhysicalBackups, type PhysicalRecord, usable } from '../catalog/physical.ts';
import type { Config } from '../core/config.ts';
import { NotFoundError } from '../core/errors.ts';
import { type RecoverableWindow, type RecoveryGap, recoverableRange } from '../restore/point-in-time.ts';

/**
 * `info`: the catalog at a glance, per target, database and kind: every backup
 * with its time, size, storage class and state, and the WAL's recoverable range.
 * Read from the bucket alone (manifests, physical records, the repository's WAL
 * listing), so the local runner and an operator's own AWS credentials run the
 * same code with different clients.
 */

/**
 * A backup's state, in the words restores go by (manifest.ts isUsable,
 * physical.ts usable): `restore-tested` (verified, and its restore test passed),
 * `verified` (no restore test result yet), `restore-test-failed` and `failed`
 * (verification) are never picked without being named; `unverified` is a
 * manifest older than VerifyArchive; `expired` a physical backup pgBackRest removed.
 */
export type BackupState =
  | 'restore-tested'
  | 'verified'
  | 'restore-test-failed'
  | 'failed'
  | 'unverified'
  | 'expired';

export interface InfoBackup {
  /** When its data ends: a dump's snapshot, a physical backup's consistent point (ISO 8601). */
  time: string;
  /** The archive's key, or the pgBackRest label. */
  name: string;
  /** What is stored, in bytes: the compressed archive, or what the backup added to the repository. */
  bytes: number;
  /** The S3 storage class of the archive as the listing gives it (`STANDARD` when S3 leaves it out). */
  storageClass: string;
  state: BackupState;
  /** Whether a `latest` restore, a drill or a recovery may pick it without its being named. */
  usable: boolean;
  /** Why it failed, or why it is not usable; null for a usable one. */
  detail: string | null;
}

export interface InfoCatalog {
  target: string;
  /** null for the file kinds, and for the physical backups (the whole cluster). */
  database: string | null;
  kind: BackupKind | 'physical';
  /** Oldest first. */
  backups: InfoBackup[];
}

export interface InfoWal {
  target: string;
  /** The range a point-in-time recovery can reach; null with `unavailable` saying why. */
  oldestRecoverable: string | null;
  newestRecoverable: string | null;
  segments: number;
  missingSegments: number;
  gaps: number;
  gapList: RecoveryGap[];
  /** What a recovery can reach, around the gaps (point-in-time.ts recoverableWindows). */
  windows: RecoverableWindow[];
  unavailable: string | null;
}

export interface Info {
  bucket: string;
  generatedAt: string;
  catalogs: InfoCatalog[];
  legacy: LegacyListing[];
  wal: InfoWal[];
}

/**
 * pgBackRest's repository has no lifecycle rule (retention.ts), so its files stay
 * in the class they were written in: S3's default.
 */
const REPOSITORY_STORAGE_CLASS = 'STANDARD';

/** Reads the whole catalog of every configured target. Throws what S3 throws (classified). */
export async function readInfo(
  config: Config,
  catalog: Catalog,
  s3: S3Client,
  now = new Date(),
): Promise<Info> {
  const catalogs: InfoCatalog[] = [];
  const legacy: LegacyListing[] = [];
  const wal: InfoWal[] = [];
  for (const target of config.BACKUP_TARGETS) {
    for (const database of target.databases ?? [target.database]) {
      for (const kind of DUMP_KINDS)
        catalogs.push(await archivesOf(catalog, s3, kind, target.name, database));
      legacy.push(...(await legacyArchives(catalog, target.name, database)));
    }
    for (const kind of FILE_KINDS) catalogs.push(await archivesOf(catalog, s3, kind, target.name, null));
    if (!target.pgbackrest) continue;
    const records = await listPhysicalBackups(catalog, target.name);
    catalogs.push({
      target: target.name,
      database: null,
      kind: 'physical',
      backups: records
        .sort((a, b) => Date.parse(a.backup.stoppedAt) - Date.parse(b.backup.stoppedAt))
        .map(physicalBackup),
    });
    wal.push(await walOf(catalog, target.name));
  }
  return { bucket: catalog.bucket, generatedAt: now.toISOString(), catalogs, legacy, wal };
}

/** One kind's archives: one listing of its prefix (keys and storage classes), then its manifests. */
async function archivesOf(
  catalog: Catalog,
  s3: S3Client,
  kind: BackupKind,
  target: string,
  database: string | null,
): Promise<InfoCatalog> {
  const classOf = new Map<string, string>();
  const manifestKeys: string[] = [];
  for await (const object of objectsUnder(s3, catalog.bucket, kindPrefix(kind, target, database))) {
    if (!object.Key) continue;
    if (object.Key.endsWith(MANIFEST_SUFFIX)) manifestKeys.push(object.Key);
    else classOf.set(object.Key, object.StorageClass ?? 'STANDARD');
  }
  const manifests = (await catalog.readAll(manifestKeys.sort())).sort(
    (a, b) => micros(a.window.until) - micros(b.window.until),
  );
  return {
    target,
    database,
    kind,
    backups: manifests.map((m) => archiveBackup(m, classOf.get(m.archive.key))),
  };
}

function archiveBackup(m: Manifest, storageClass: string | undefined): InfoBackup {
  const { verification: v } = m;
  const test = v.restoreTest;
  const state: BackupState =
    v.state !== 'verified'
      ? v.state
      : test?.state === 'passed'
        ? 'restore-tested'
        : test?.state === 'failed'
          ? 'restore-test-failed'
          : 'verified';
  const detail =
    v.state === 'failed'
      ? (v.detail ?? 'verification failed')
      : test?.state === 'failed'
        ? `restore test failed at ${test.checkedAt}: ${test.detail}`
        : v.state === 'unverified'
          ? 'never verified'
          : test === undefined
            ? 'no restore test result'
            : null;
  return {
    time: m.window.until,
    name: m.archive.key,
    bytes: m.archive.size,
    // An archive whose object is gone has only its manifest left: said, not guessed.
    storageClass: storageClass ?? `missing (${manifestKey(m.archive.key)} alone)`,
    state,
    usable: isUsable(m),
    detail: detail?.slice(0, 600) ?? null,
  };
}

function physicalBackup(r: PhysicalRecord): InfoBackup {
  const { verification: v } = r;
  const test = v.restoreTest;
  const state: BackupState = r.expired
    ? 'expired'
    : v.state === 'failed'
      ? 'failed'
      : test?.state === 'passed'
        ? 'restore-tested'
        : test?.state === 'failed'
          ? 'restore-test-failed'
          : 'verified';
  const detail = r.expired
    ? `expired by pgBackRest at ${r.expired.at}`
    : v.state === 'failed'
      ? v.detail
      : test?.state === 'failed'
        ? `restore test failed at ${test.checkedAt}: ${test.detail}`
        : test === undefined
          ? 'no restore test result: nothing builds on it and no recovery starts from it'
          : null;
  return {
    time: r.backup.stoppedAt,
    name: `${r.label} (${r.kind})`,
    bytes: r.backup.repositoryDeltaBytes,
    storageClass: REPOSITORY_STORAGE_CLASS,
    state,
    usable: usable(r, true),
    detail: detail?.slice(0, 600) ?? null,
  };
}

async function walOf(catalog: Catalog, target: string): Promise<InfoWal> {
  try {
    const range = await recoverableRange(catalog, target);
    return {
      target,
      oldestRecoverable: range.oldestRecoverable,
      newestRecoverable: range.newestRecoverable,
      segments: range.segments,
      missingSegments: range.missing,
      gaps: range.gaps,
      gapList: range.gapList,
      windows: range.windows,
      unavailable: null,
    };
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    return {
      target,
      oldestRecoverable: null,
      newestRecoverable: null,
      segments: 0,
      missingSegments: 0,
      gaps: 0,
      gapList: [],
      windows: [],
      unavailable: error.message,
    };
  }
}

/** 1.2 MB: decimal units, as S3's console shows sizes. */
export function humanBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Rows of cells as lines of aligned columns, two spaces apart, the header first: the operator tools' tables. */
export function columns(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
}

/** An ISO time to the second, as the table shows times. */
const second = (iso: string | null) => iso?.replace(/\.\d+/, '') ?? '-';

/** `info`'s table for people: one line per backup, then each target's WAL range and gaps. */
export function formatInfo(info: Info): string {
  const rows: string[][] = [['TARGET', 'DATABASE', 'KIND', 'TIME', 'SIZE', 'CLASS', 'STATE', 'BACKUP']];
  for (const c of info.catalogs) {
    const database = c.database ?? (c.kind === 'physical' ? '(cluster)' : '(files)');
    if (c.backups.length === 0) rows.push([c.target, database, c.kind, '-', '-', '-', 'none', '']);
    for (const b of c.backups)
      rows.push([
        c.target,
        database,
        c.kind,
        second(b.time),
        humanBytes(b.bytes),
        b.storageClass,
        b.state,
        b.detail && b.state !== 'verified' ? `${b.name}: ${b.detail}` : b.name,
      ]);
  }
  const lines = columns(rows);
  lines.push('');
  for (const l of info.legacy)
    lines.push(
      `${l.target} ${l.database} ${l.kind}: ${l.archives} legacy archive(s), ${l.oldest} to ${l.newest}: never restored`,
    );
  for (const w of info.wal) {
    if (w.unavailable) {
      lines.push(`WAL of ${w.target}: no recoverable range: ${w.unavailable}`);
      continue;
    }
    lines.push(
      `WAL of ${w.target}: recoverable from ${second(w.oldestRecoverable)} to ${second(w.newestRecoverable ?? w.oldestRecoverable)} (${w.segments} segments; ${w.gaps === 0 ? 'no gap' : `${w.gaps} gap(s), ${w.missingSegments} segments missing`})`,
    );
    for (const g of w.gapList)
      lines.push(
        `  gap: ${g.first}${g.count > 1 ? ` to ${g.last} (${g.count} segments)` : ''}: nothing from ${g.after ? second(g.after) : 'the base backup'} ${g.resumes ? `until ${second(g.resumes.at)} (the consistent point of ${g.resumes.label}, the first backup since) can be recovered` : 'on can be recovered: no backup was taken since (database-backup with {"kind": "full"} takes one)'}`,
      );
    if (w.gaps > 0)
      lines.push(
        `  recoverable: ${w.windows.map((x) => `${second(x.from)} to ${second(x.to)}`).join(', ') || 'nothing'}${w.gaps > w.gapList.length ? ` (from the first ${w.gapList.length} gaps)` : ''}`,
      );
  }
  lines.push(`Bucket ${info.bucket}, read at ${info.generatedAt}.`);
  return lines.join('\n');
}
