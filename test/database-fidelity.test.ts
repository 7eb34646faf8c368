import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { zstdCompressSync } from 'node:zlib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../local/runner.ts';
import { type Plan, restoreTestPlanOf } from '../shared/backup/database-plan.ts';
import { BACKUP_HOST_COMMANDS } from '../shared/backup/host-commands.ts';
import type { DatabaseManifest, DatabaseProperties } from '../shared/catalog/manifest.ts';
import { localPathOf } from '../shared/catalog/manifest-builder.ts';
import { parseConfig } from '../shared/core/config.ts';
import { renderHostCommand } from '../shared/host/scripts.ts';
import type { RestorePlan } from '../shared/restore/database-schemas.ts';
import { RESTORE_HOST_COMMANDS } from '../shared/restore/host-commands.ts';
import { type MissingRoles, standInMark } from '../shared/restore/missing-roles.ts';
import { databaseExists, databasesLike } from './support/checksums.ts';
import { contents, databaseProperties, type Query } from './support/contents.ts';
import { runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { PROPERTIES, pastBackup, propertiesLine } from './support/manifests.ts';
import { runProcess } from './support/process.ts';

/**
 * A logical backup restores the database, not just its tables, whatever its
 * size: each test makes a database of its own, takes a full backup of it (its
 * restore test included) and restores it with the database-restore workflow,
 * comparing every table's content with a reference taken before the backup.
 */

let world: TestWorld;
const q: Query = (database, query) => world.sql(database, query);

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world?.stop();
});

/** A full backup of one database (the dump alone), and its manifest. */
async function fullBackupOf(database: string): Promise<DatabaseManifest> {
  const run = await runIn(world, { input: { kind: 'full', database } });
  expect(run.record.status, run.alerts[0]?.cause ?? run.record.cause).toBe('SUCCEEDED');
  return world.catalog.readDatabaseManifest(runsOf(run.record)[0]?.plan.manifestKey ?? '');
}

/** The database-restore workflow, from the newest full backup of `database` into `targetDatabase`. */
async function restoreInto(
  database: string,
  targetDatabase: string,
  options: Parameters<typeof runIn>[1] = {},
) {
  const run = await runIn(world, {
    workflow: 'database-restore',
    input: { database, targetDatabase },
    ...options,
  });
  expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
  return run;
}

function dropDatabases(...names: string[]) {
  for (const name of names) world.sql('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

describe('the database, not just its tables', () => {
  it('a LATIN1 database whose owner and roles are gone comes back whole: encoding, locale, settings, owner, roles, every row and sequence', async () => {
    world.sql(
      'postgres',
      `CREATE ROLE kb_fid_owner LOGIN; CREATE ROLE kb_fid_readers NOLOGIN;
       CREATE ROLE kb_fid_reader LOGIN NOINHERIT IN ROLE kb_fid_readers`,
    );
    world.sql(
      'postgres',
      "CREATE DATABASE kb_latin1 OWNER kb_fid_owner ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    );
    try {
      world.sql(
        'kb_latin1',
        // chr() gives a character in the database's own encoding: ü is the byte FC, ß DF.
        `ALTER DATABASE kb_latin1 SET search_path = app, "$user", public;
         ALTER DATABASE kb_latin1 SET work_mem = '5MB';
         DO $$ BEGIN
           EXECUTE format('ALTER DATABASE kb_latin1 SET "app.greeting" = %L', 'gr' || chr(252) || chr(223) || ' dich, it''s me');
         END $$;
         ALTER ROLE kb_fid_reader IN DATABASE kb_latin1 SET statement_timeout = '5s';
         CREATE SCHEMA app AUTHORIZATION kb_fid_owner;
         CREATE TABLE app.pets (id serial PRIMARY KEY, name text NOT NULL);
         ALTER TABLE app.pets OWNER TO kb_fid_owner;
         INSERT INTO app.pets (name) VALUES ('Fl' || chr(246) || 'ckchen'), (chr(198) || 'r' || chr(248)), ('Se' || chr(241) || 'or');
         SELECT setval('app.pets_id_seq', 41);
         GRANT USAGE ON SCHEMA app TO kb_fid_readers;
         GRANT SELECT ON app.pets TO kb_fid_readers`,
      );
      const reference = contents(q, 'kb_latin1');
      const properties = databaseProperties(q, 'kb_latin1');
      expect(properties).toMatchObject({
        encoding: 'LATIN1',
        collate: 'C',
        ctype: 'C',
        owner: 'kb_fid_owner',
      });

      const manifest = await fullBackupOf('kb_latin1');
      expect(manifest.verification.restoreTest).toMatchObject({
        state: 'passed',
        detail:
          '1 table, 3 rows match the dump; encoding LATIN1, locale C/C, owner kb_fid_owner and 4 settings as backed up',
      });
      expect(manifest.properties).toMatchObject({
        encoding: 'LATIN1',
        collate: 'C',
        ctype: 'C',
        localeProvider: 'libc',
        icuLocale: null,
        owner: 'kb_fid_owner',
        settings: [
          { role: null, setting: 'search_path=app, "$user", public' },
          { role: null, setting: 'work_mem=5MB' },
          { role: null, setting: "app.greeting=grüß dich, it's me" },
          { role: 'kb_fid_reader', setting: 'statement_timeout=5s' },
        ],
      });
      expect(manifest.properties?.roles.map((r) => [r.name, r.owns, r.login, r.memberOf])).toEqual([
        ['kb_fid_owner', true, true, []],
        ['kb_fid_reader', false, true, ['kb_fid_readers']],
        ['kb_fid_readers', false, false, []],
      ]);

      // A cluster without them: the database and its roles are gone.
      dropDatabases('kb_latin1');
      world.sql('postgres', 'DROP ROLE kb_fid_reader, kb_fid_readers, kb_fid_owner');

      const run = await restoreInto('kb_latin1', 'kb_latin1_restored');
      expect(run.alerts[0]?.text).toContain(
        'Database: encoding LATIN1, locale C/C, owner kb_fid_owner; settings applied: search_path, work_mem, app.greeting, kb_fid_reader: statement_timeout; roles created, NOLOGIN and without a password (ALTER ROLE … LOGIN to let one log in): kb_fid_owner, kb_fid_reader, kb_fid_readers',
      );
      expect(contents(q, 'kb_latin1_restored')).toEqual(reference);
      expect(databaseProperties(q, 'kb_latin1_restored')).toEqual(properties);
      expect(
        world.sql(
          'postgres',
          `SELECT string_agg(r.rolname || ' ' || r.rolcanlogin || ' ' || r.rolinherit || ' ' || coalesce(g.rolname, '-'), ', ' ORDER BY r.rolname)
           FROM pg_roles r LEFT JOIN pg_auth_members m ON m.member = r.oid LEFT JOIN pg_roles g ON g.oid = m.roleid
           WHERE r.rolname LIKE 'kb_fid_%'`,
        ),
      ).toBe(
        'kb_fid_owner false true -, kb_fid_reader false false kb_fid_readers, kb_fid_readers false true -',
      );
      expect(
        world.sql('kb_latin1_restored', "SELECT has_table_privilege('kb_fid_readers', 'app.pets', 'SELECT')"),
      ).toBe('t');
    } finally {
      dropDatabases('kb_latin1', 'kb_latin1_restored');
      world.sql('postgres', 'DROP ROLE IF EXISTS kb_fid_reader, kb_fid_readers, kb_fid_owner');
    }
  }, 300_000);

  it("an SQL_ASCII database's bytes come back as they were, and upper() still reads them", async () => {
    world.sql(
      'postgres',
      "CREATE DATABASE kb_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    );
    try {
      // Bytes that are no valid UTF-8: Latin-1's é and ÿ, a lone continuation byte.
      world.sql(
        'kb_ascii',
        String.raw`ALTER DATABASE kb_ascii SET "app.note" = E'caf\xe9';
         CREATE TABLE notes (id serial PRIMARY KEY, body text);
         INSERT INTO notes (body) VALUES (E'caf\xe9 au lait'), (E'\xff\x80 raw'), ('plain')`,
      );
      const hex = (database: string) =>
        world.sql(
          database,
          "SELECT string_agg(encode(convert_to(upper(body), 'SQL_ASCII'), 'hex'), ',' ORDER BY id) FROM notes",
        );
      const reference = contents(q, 'kb_ascii');
      const properties = databaseProperties(q, 'kb_ascii');
      const upper = hex('kb_ascii');

      const manifest = await fullBackupOf('kb_ascii');
      expect(manifest.properties).toMatchObject({ encoding: 'SQL_ASCII', collate: 'C', ctype: 'C' });
      expect(manifest.verification.restoreTest?.state).toBe('passed');

      await restoreInto('kb_ascii', 'kb_ascii_restored');
      expect(contents(q, 'kb_ascii_restored')).toEqual(reference);
      expect(databaseProperties(q, 'kb_ascii_restored')).toEqual(properties);
      expect(hex('kb_ascii_restored')).toBe(upper);
      expect(upper).toContain('434146e9'); // CAF and the byte é as it was
    } finally {
      dropDatabases('kb_ascii', 'kb_ascii_restored');
    }
  }, 300_000);
});

/**
 * Runs host/restore-archive.sh, as the restore test renders it (or a restore,
 * given `missingRoles`), on a dump made here: its properties line, then
 * `statements`.
 */
async function restoreMadeDump(
  properties: unknown,
  statements: string[],
  into: string,
  hostEnv: Record<string, string> = {},
  missingRoles?: MissingRoles,
) {
  const config = parseConfig(world.env.functionEnv);
  const [target] = config.BACKUP_TARGETS;
  if (!target) throw new Error('no target');
  const bytes = zstdCompressSync(Buffer.from([propertiesLine(properties), ...statements, ''].join('\n')));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const manifest = pastBackup({ daysAgo: 0, now: new Date(), target: target.name });
  const plan = restoreTestPlanOf(
    { ...manifest, archive: { ...manifest.archive, sha256 } },
    target,
    world.env.bucket,
    into,
  );
  mkdirSync(plan.localDir, { recursive: true });
  writeFileSync(localPathOf(plan), bytes);
  try {
    const script = missingRoles
      ? renderHostCommand(config, target, RESTORE_HOST_COMMANDS['database-restore'], {
          script: 'database-restore',
          plan: restorePlanOf(plan, manifest.window, sha256, missingRoles),
        })
      : renderHostCommand(config, target, BACKUP_HOST_COMMANDS['restore-test'], {
          script: 'restore-test',
          sha256,
          plan,
        });
    return await runProcess('bash', ['-c', script], { ...world.env.hostEnv, ...hostEnv });
  } finally {
    rmSync(localPathOf(plan), { force: true });
  }
}

/** The plan of a restore of the restore test `plan`'s dump (its sha256 `sha256`), built in its scratch database. */
function restorePlanOf(
  plan: Plan,
  window: RestorePlan['archives'][number]['window'],
  sha256: string,
  missingRoles: MissingRoles,
): RestorePlan {
  const { target, runId, database, executionId, startedAt, scratchDatabase: staging } = plan;
  return {
    target,
    runId,
    database,
    executionId,
    startedAt,
    overProduction: false,
    targetDatabase: `${staging}_final`,
    stagingDatabase: staging,
    replacedDatabase: `${staging}_replaced`,
    dryRun: false,
    source: 'primary',
    archives: [
      {
        kind: 'full',
        key: plan.archiveKey,
        manifestKey: plan.manifestKey,
        sha256,
        localPath: localPathOf(plan),
        codec: plan.codec,
        // The host's own copy is restored: no version of the object is fetched.
        versionId: null,
        window,
        restoreTest: 'never ran',
      },
    ],
    safetyDump: null,
    carry: [],
    rowSources: { listed: [], unlisted: { tables: 0, rows: 0 } },
    missingRoles,
    roles: '',
  };
}

/** PROPERTIES with one role, `owner`, that owns the database. */
function ownedBy(owner: string) {
  const [role] = PROPERTIES.roles;
  return { ...PROPERTIES, owner, settings: [], roles: [{ ...role, name: owner }] };
}

describe('a dump that does not apply completely', () => {
  it('leaves nothing behind: neither the new database nor the roles created for it', async () => {
    const result = await restoreMadeDump(
      ownedBy('kb_gone'),
      [
        'CREATE TABLE half (id int);',
        'ALTER TABLE half OWNER TO kb_gone;',
        'INSERT INTO half VALUES (1);',
        'SELECT 1 / 0;',
        'CREATE TABLE never (id int);',
      ],
      'kb_half',
    );
    expect(result.code).not.toBe(0);
    expect(result.stdout).toContain('created the roles ["kb_gone"]');
    expect(result.stderr).toContain('division by zero');
    expect(result.stderr).toContain('dropped the roles it had created: ["kb_gone"]');
    expect(databaseExists(world, 'kb_half')).toBe(false);
    expect(world.sql('postgres', "SELECT count(*) FROM pg_roles WHERE rolname = 'kb_gone'")).toBe('0');
  });
});

const resultOf = (stdout: string): unknown => JSON.parse(/^KB-RESULT (.*)$/m.exec(stdout)?.[1] ?? 'null');

/** Roles of the cluster by name, and those a restore marked as its stand-ins, whoever's run. */
const rolesNamed = (...names: string[]) =>
  world.sql(
    'postgres',
    `SELECT coalesce(string_agg(rolname, ',' ORDER BY rolname), '') FROM pg_roles
     WHERE rolname IN (${names.map((n) => `'${n}'`).join(', ')})
        OR shobj_description(oid, 'pg_authid') LIKE 'kennel-backup: stands in%'`,
  );

/** PROPERTIES for a database of `owner`, whose objects also belong to `owners` and are granted to `grantees`. */
function needing(
  owner: string,
  owners: string[],
  grantees: string[],
  settings: DatabaseProperties['settings'],
) {
  const [role] = PROPERTIES.roles;
  return {
    ...PROPERTIES,
    owner,
    settings,
    roles: [
      ...[owner, ...owners].map((name) => ({ ...role, name, owns: true })),
      ...grantees.map((name) => ({ ...role, name, owns: false })),
    ],
  };
}

describe('a restore asked to omit the missing roles (missingRoles: omit)', () => {
  it("gives the missing owners' objects to the database's owner, leaves what existing roles own and the grants to the missing out, and leaves no role; the dump's text is applied as it is", async () => {
    world.sql('postgres', 'CREATE ROLE kb_keeper NOLOGIN; CREATE ROLE kb_other NOLOGIN');
    try {
      const result = await restoreMadeDump(
        needing(
          'kb_keeper',
          ['kb_other', 'kb_gone'],
          ['kb_gone_reader'],
          [
            { role: null, setting: 'work_mem=5MB' },
            { role: 'kb_gone_reader', setting: 'statement_timeout=5s' },
          ],
        ),
        [
          'CREATE SCHEMA app;',
          'ALTER SCHEMA app OWNER TO kb_gone;',
          'CREATE TABLE app.pets (id serial PRIMARY KEY, note text);',
          'ALTER TABLE app.pets OWNER TO kb_gone;',
          // A function body and a row that read like the statements a filter would rewrite.
          "CREATE FUNCTION app.says() RETURNS text LANGUAGE sql AS $$SELECT 'ALTER TABLE app.pets OWNER TO kb_gone;'$$;",
          'ALTER FUNCTION app.says() OWNER TO kb_gone;',
          'CREATE TABLE public.kept (id int);',
          'ALTER TABLE public.kept OWNER TO kb_other;',
          'COPY app.pets (id, note) FROM stdin;',
          '1\tALTER TABLE app.pets OWNER TO kb_gone;',
          '\\.',
          "SELECT pg_catalog.setval('app.pets_id_seq', 41, true);",
          'INSERT INTO public.kept VALUES (7);',
          "SELECT lo_from_bytea(4242, 'x-ray');",
          'ALTER LARGE OBJECT 4242 OWNER TO kb_gone;',
          'GRANT SELECT ON app.pets TO kb_gone_reader;',
          'GRANT SELECT ON public.kept TO kb_gone_reader;',
          'ALTER DEFAULT PRIVILEGES FOR ROLE kb_gone IN SCHEMA app GRANT SELECT ON TABLES TO kb_gone_reader;',
        ],
        'kb_omit',
        {},
        'omit',
      );
      expect(result.code, result.stderr).toBe(0);
      expect(resultOf(result.stdout)).toMatchObject({
        owner: 'kb_keeper',
        settings: ['work_mem'],
        createdRoles: [],
        omittedRoles: ['kb_gone', 'kb_gone_reader'],
        omittedOwners: ['kb_gone'],
      });
      expect(rolesNamed('kb_gone', 'kb_gone_reader')).toBe('');
      expect(
        world.sql(
          'kb_omit',
          `SELECT string_agg(what || ' ' || owner, ', ' ORDER BY what) FROM (
             SELECT nspname AS what, pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname IN ('app', 'public')
             UNION ALL SELECT oid::regclass::text, pg_get_userbyid(relowner) FROM pg_class
               WHERE relnamespace IN ('app'::regnamespace, 'public'::regnamespace)
             UNION ALL SELECT 'app.says()', pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'says'
             UNION ALL SELECT 'large object ' || oid, pg_get_userbyid(lomowner) FROM pg_largeobject_metadata) o`,
        ),
      ).toBe(
        'app kb_keeper, app.pets kb_keeper, app.pets_id_seq kb_keeper, app.pets_pkey kb_keeper, app.says() kb_keeper, kept kb_other, large object 4242 kb_keeper, public pg_database_owner',
      );
      expect(
        world.sql(
          'kb_omit',
          `SELECT (SELECT string_agg(coalesce(relacl::text, '-'), ' ' ORDER BY oid) FROM pg_class WHERE relname IN ('pets', 'kept'))
             || ' ' || (SELECT count(*) FROM pg_default_acl)
             || ' ' || (SELECT note FROM app.pets) || ' ' || app.says() || ' ' || (SELECT last_value FROM app.pets_id_seq)
             || ' ' || (SELECT id FROM public.kept) || ' ' || convert_from(lo_get(4242), 'UTF8')`,
        ),
      ).toBe(
        '{kb_keeper=arwdDxt/kb_keeper} {kb_other=arwdDxt/kb_other} 0 ALTER TABLE app.pets OWNER TO kb_gone; ALTER TABLE app.pets OWNER TO kb_gone; 41 7 x-ray',
      );
      expect(databaseProperties(q, 'kb_omit')).toMatchObject({
        owner: 'kb_keeper',
        settings: ['work_mem=5MB'],
      });
    } finally {
      dropDatabases('kb_omit');
      world.sql('postgres', 'DROP ROLE IF EXISTS kb_keeper, kb_other');
    }
  });

  it('leaves nothing when the dump fails midway, and gives nothing away when another run uses a stand-in', async () => {
    const properties = needing('kb_gone', [], ['kb_gone_reader'], []);
    const failed = await restoreMadeDump(
      properties,
      [
        'CREATE TABLE half (id int);',
        'ALTER TABLE half OWNER TO kb_gone;',
        'GRANT SELECT ON half TO kb_gone_reader;',
        'INSERT INTO half VALUES (1);',
        'SELECT 1 / 0;',
      ],
      'kb_half',
      {},
      'omit',
    );
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain('division by zero');
    expect(failed.stderr).toContain(
      'dropped the stand-ins of the omitted roles: ["kb_gone", "kb_gone_reader"]',
    );
    expect(databaseExists(world, 'kb_half')).toBe(false);
    expect(rolesNamed('kb_gone', 'kb_gone_reader')).toBe('');

    // A database another run made for a stand-in, taking it for a role of the cluster, as REASSIGN OWNED would give it away.
    try {
      const shared = await restoreMadeDump(
        properties,
        ['CREATE TABLE t (id int);', 'CREATE DATABASE kb_elsewhere OWNER kb_gone;'],
        'kb_shared',
        {},
        'omit',
      );
      expect(shared.code).not.toBe(0);
      expect(shared.stderr).toContain(
        'the stand-ins of the omitted roles are used outside the restored database: kb_gone (database kb_elsewhere)',
      );
      expect(shared.stderr).toContain('dropped the stand-ins of the omitted roles: ["kb_gone_reader"]');
      expect(shared.stderr).toContain(
        'the stand-ins of the omitted roles ["kb_gone"] are used by another database',
      );
      expect(databaseExists(world, 'kb_shared')).toBe(false);
      expect(
        world.sql(
          'postgres',
          "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'kb_elsewhere'",
        ),
      ).toBe('kb_gone');
    } finally {
      dropDatabases('kb_elsewhere');
      world.sql('postgres', 'DROP ROLE IF EXISTS kb_gone');
    }
  });

  it("restore-cleanup drops a stopped run's stand-ins once its staging database is gone, and no other run's", async () => {
    const staging = 'kb_restoring_20261130t000000z_0000abcd';
    world.sql(
      'postgres',
      `CREATE ROLE kb_stood NOLOGIN; COMMENT ON ROLE kb_stood IS '${standInMark(staging)}';
       CREATE ROLE kb_stood_elsewhere NOLOGIN; COMMENT ON ROLE kb_stood_elsewhere IS '${standInMark('kb_restoring_other')}'`,
    );
    world.sql('postgres', `CREATE DATABASE ${staging} OWNER kb_stood`);
    try {
      const config = parseConfig(world.env.functionEnv);
      const [target] = config.BACKUP_TARGETS;
      if (!target) throw new Error('no target');
      const script = renderHostCommand(config, target, RESTORE_HOST_COMMANDS['restore-cleanup'], {
        script: 'restore-cleanup',
        plan: {
          target: target.name,
          runId: '20261130T000000Z_0000abcd',
          database: 'kb_app',
          overProduction: false,
          targetDatabase: 'kb_app_copy',
          stagingDatabase: staging,
          replacedDatabase: 'kb_replaced_20261130t000000z_0000abcd',
          recovery: null,
          failedAt: 'WaitForRestore',
          startApplication: false,
          safetyDump: null,
        },
      });
      const result = await runProcess('bash', ['-c', script], world.env.hostEnv);
      expect(result.code, result.stderr).toBe(0);
      expect(resultOf(result.stdout)).toMatchObject({
        stagingDropped: true,
        standIns: { dropped: ['kb_stood'], left: [] },
      });
      expect(rolesNamed('kb_stood')).toBe('kb_stood_elsewhere');
    } finally {
      dropDatabases(staging);
      world.sql('postgres', 'DROP ROLE IF EXISTS kb_stood, kb_stood_elsewhere');
    }
  });
});

/** The README's CREATE ROLE and GRANTs for the backup role, as an operator would paste them. */
function readmeGrants(): string {
  const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Least privilege in the database'));
  const block = /```sql\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('README: no SQL block under "Least privilege in the database"');
  return block;
}

describe('least privilege: the backup role of the README, not a superuser', () => {
  it('takes the full backup and its restore test, restores over production and into a cluster without the owner roles (creating them, or omitting them when asked), and refuses, changing nothing, what it cannot give to its owner', async () => {
    const password = randomBytes(12).toString('hex');
    world.sql(
      'postgres',
      `CREATE ROLE kennel_app LOGIN; CREATE ROLE kennel_reader LOGIN PASSWORD '${password}'`,
    );
    world.sql('postgres', readmeGrants().replace("'change-me'", `'${password}'`));
    expect(world.sql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'kennel_backup'")).toBe('f');
    world.sql('postgres', 'CREATE DATABASE kb_app OWNER kennel_app');
    const { host, port } = world.env.postgres;
    const asBackup = {
      hostEnv: { PGUSER: 'kennel_backup', PGPASSWORD: password },
      databaseUrl: `postgres://kennel_backup:${password}@${host}:${port}`,
    };
    try {
      world.sql(
        'kb_app',
        `SET ROLE kennel_app;
         CREATE TABLE pets (id serial PRIMARY KEY, name text NOT NULL);
         INSERT INTO pets (name) VALUES ('Rex'), ('Mia');
         CREATE TABLE visits (pet_id int REFERENCES pets, at timestamptz NOT NULL DEFAULT now());
         INSERT INTO visits (pet_id) SELECT id FROM pets;
         SELECT lo_from_bytea(0, 'x-ray of Rex');
         GRANT SELECT ON pets TO kennel_reader;
         ALTER DATABASE kb_app SET search_path = public;
         RESET ROLE;
         ALTER ROLE kennel_reader IN DATABASE kb_app SET statement_timeout = '5s'`,
      );
      const reference = contents(q, 'kb_app');
      const properties = databaseProperties(q, 'kb_app');

      const backup = await runIn(world, { input: { kind: 'full', database: 'kb_app' }, ...asBackup });
      expect(backup.record.status, backup.alerts[0]?.cause).toBe('SUCCEEDED');
      const manifest = await world.catalog.readDatabaseManifest(
        runsOf(backup.record)[0]?.plan.manifestKey ?? '',
      );
      expect(manifest.verification.restoreTest?.state).toBe('passed');

      // Over production, with a session of another role still on it: the swap ends it.
      const reader = new pg.Client({
        connectionString: `postgres://kennel_reader:${password}@${host}:${port}/kb_app`,
      });
      reader.on('error', () => {});
      await reader.connect();
      const over = await runIn(world, {
        workflow: 'database-restore',
        input: { database: 'kb_app', targetDatabase: 'kb_app', confirm: 'kb_app' },
        ...asBackup,
      });
      await reader.end().catch(() => {});
      expect(over.record.status, over.alerts[0]?.cause ?? over.record.cause).toBe('SUCCEEDED');
      expect(contents(q, 'kb_app')).toEqual(reference);
      dropDatabases((over.record.output as { replacedDatabase: string }).replacedDatabase);

      // Without the membership of the owner, a restore stops before it changes anything, and says what to grant.
      world.sql('postgres', 'REVOKE kennel_app FROM kennel_backup');
      const refused = await runIn(world, {
        workflow: 'database-restore',
        input: { database: 'kb_app', targetDatabase: 'kb_app_refused' },
        ...asBackup,
      });
      expect(refused.record.status).toBe('FAILED');
      expect(refused.alerts[0]?.cause).toContain(
        'as a superuser, run: GRANT kennel_app TO kennel_backup; (README: least privilege). Nothing was changed.',
      );
      expect(databasesLike(world, 'kb_')).toEqual(['kb_app']);
      world.sql('postgres', 'GRANT kennel_app TO kennel_backup');
      // Nor can it give a database to a superuser: it says so, and changes nothing.
      const superuser = world.env.postgres.user;
      const bySuperuser = await restoreMadeDump(
        ownedBy(superuser),
        ['CREATE TABLE t (id int);'],
        'kb_super',
        asBackup.hostEnv,
      );
      expect(bySuperuser.code).toBe(1);
      expect(bySuperuser.stderr).toContain(
        `the database or some of its objects belong to the superuser ${superuser}, which only a superuser can give them to`,
      );
      expect(databasesLike(world, 'kb_')).toEqual(['kb_app']);

      // A cluster without the owner roles: kennel_backup creates them, and is a member of none beforehand.
      dropDatabases('kb_app');
      world.sql('postgres', 'DROP ROLE kennel_reader, kennel_app');
      const again = await runIn(world, {
        workflow: 'database-restore',
        input: { database: 'kb_app', targetDatabase: 'kb_app_again' },
        ...asBackup,
      });
      expect(again.record.status, again.alerts[0]?.cause ?? again.record.cause).toBe('SUCCEEDED');
      expect(again.alerts[0]?.text).toContain(
        'roles created, NOLOGIN and without a password (ALTER ROLE … LOGIN to let one log in): kennel_app, kennel_reader',
      );
      expect(contents(q, 'kb_app_again')).toEqual(reference);
      expect(databaseProperties(q, 'kb_app_again')).toEqual(properties);

      // Again without them, asked to omit them: the dry run says so; none is created, nor left, and
      // their objects are the database owner's, here kennel_backup's, as pg_restore --no-owner gives them.
      dropDatabases('kb_app_again');
      world.sql('postgres', 'DROP ROLE kennel_reader, kennel_app');
      const omit = { database: 'kb_app', targetDatabase: 'kb_app_omitted', missingRoles: 'omit' };
      const dry = await runIn(world, { workflow: 'database-restore', input: { ...omit, dryRun: true } });
      expect((dry.record.output as { plan: RestorePlan }).plan.roles).toBe(
        "The backup's objects belong to kennel_app; it also names kennel_reader (grants, settings). Roles among them that this cluster lacks will not be created (missingRoles: omit): their objects will be owned by the new database's owner (kennel_app if this cluster has it, otherwise the role the host connects as), and their grants, default privileges and settings left out.",
      );
      const omitted = await runIn(world, { workflow: 'database-restore', input: omit, ...asBackup });
      expect(omitted.record.status, omitted.alerts[0]?.cause ?? omitted.record.cause).toBe('SUCCEEDED');
      expect(omitted.alerts[0]?.text).toContain(
        'owner kennel_backup; settings applied: search_path; owners not restored (missingRoles: omit): objects of kennel_app now owned by kennel_backup; grants to and settings of kennel_app, kennel_reader left out; no role was created',
      );
      expect(contents(q, 'kb_app_omitted')).toEqual(reference);
      expect(databaseProperties(q, 'kb_app_omitted')).toEqual({
        ...properties,
        owner: 'kennel_backup',
        settings: ['search_path=public'],
      });
      expect(rolesNamed('kennel_app', 'kennel_reader')).toBe('');
      expect(
        world.sql(
          'kb_app_omitted',
          `SELECT string_agg(DISTINCT pg_get_userbyid(owner), ',') FROM (
             SELECT relowner FROM pg_class WHERE relnamespace = 'public'::regnamespace
             UNION ALL SELECT lomowner FROM pg_largeobject_metadata) o (owner)`,
        ),
      ).toBe('kennel_backup');
      for (const run of [backup, over, again, omitted]) expect(run.visibleText).not.toContain(password);
    } finally {
      // A failed restore may leave its staging database, or a replaced one: they hold grants to the roles.
      dropDatabases(...databasesLike(world, 'kb_'));
      world.sql('postgres', 'DROP ROLE IF EXISTS kennel_reader, kennel_app');
    }
  }, 300_000);
});
