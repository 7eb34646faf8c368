import { archiveKey, compactStamp, type DatabaseKind, isLegacyKind } from '../../shared/catalog/keys.ts';
import type { DatabaseManifest, DatabaseProperties } from '../../shared/catalog/manifest.ts';

/**
 * The manifest of a database backup taken `daysAgo` days (and `extraMs`) before
 * `now`, as the host would have written it: for planting a history in a catalog
 * (a legacy row-window kind's too, as those runs wrote them).
 */
export function pastBackup(options: {
  daysAgo: number;
  now: Date;
  kind?: DatabaseKind;
  target?: string;
  state?: DatabaseManifest['verification']['state'];
  extraMs?: number;
  localDir?: string;
}): DatabaseManifest {
  const { daysAgo, now, kind = 'full', target = 'primary', state = 'verified', extraMs = 0 } = options;
  const until = new Date(now.getTime() - daysAgo * 86_400_000 - extraMs).toISOString();
  const runId = `${compactStamp(until)}_${daysAgo.toString(16).padStart(8, '0')}`;
  const fileName = `kennel_prod_${kind}_${runId}.sql.zst`;
  return {
    version: 2,
    kind,
    target,
    database: 'kennel_prod',
    runId,
    executionId: `e-${kind}-${daysAgo}`,
    archive: {
      key: archiveKey(kind, target, 'kennel_prod', until, fileName),
      localPath: `${options.localDir ?? '/opt/backup'}/${fileName}`,
      fileName,
      size: 11,
      sha256: '0'.repeat(64),
      format: isLegacyKind(kind) ? 'changes' : 'plain',
      compression: 'zstd',
    },
    window: { since: null, until },
    startedAt: until,
    finishedAt: until,
    serverVersion: '150018',
    excludedTables:
      kind === 'full'
        ? [
            { schema: 'public', name: 'audit_logs' },
            { schema: 'public', name: 'session_logs' },
          ]
        : [],
    tables: [],
    properties: null,
    verification: { state },
  };
}

/** A database's properties as database-backup.sh reads them (a UTF-8 database, one role). */
export const PROPERTIES: DatabaseProperties = {
  encoding: 'UTF8',
  collate: 'C.UTF-8',
  ctype: 'C.UTF-8',
  localeProvider: 'libc',
  icuLocale: null,
  owner: 'kennel',
  settings: [
    { role: null, setting: 'search_path=app, "$user", public' },
    { role: 'kennel', setting: 'app.greeting=grüß dich' },
  ],
  roles: [
    {
      name: 'kennel',
      owns: true,
      superuser: false,
      login: true,
      inherit: true,
      createdb: false,
      createrole: false,
      replication: false,
      bypassrls: false,
      memberOf: [],
    },
  ],
};

/** A dump's first line, as database-backup.sh writes it before pg_dump's output. */
export function propertiesLine(properties: unknown = PROPERTIES): string {
  return `-- kennel-backup database-properties UTF8 ${Buffer.from(JSON.stringify(properties)).toString('base64')}`;
}
