import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODECS } from '../shared/codecs.ts';
import { parseConfig } from '../shared/config.ts';
import type { DatabaseManifest } from '../shared/manifest.ts';
import { planRestore } from '../shared/restore-plan.ts';
import { renderScript } from '../shared/shell.ts';
import { runIn, runsOf, startWorld, type TestWorld } from './support/environment.ts';
import { runProcess } from './support/process.ts';

let world: TestWorld;
let verified: DatabaseManifest;

beforeAll(async () => {
  world = await startWorld();
  const run = await runIn(world, { input: { kind: 'full' } });
  verified = await world.catalog.readDatabaseManifest(runsOf(run.record)[0]?.plan.manifestKey ?? '');
});
afterAll(async () => {
  await world?.stop();
});

const request = (input: unknown) => ({
  input,
  executionId: 'arn:aws:states:us-east-1:123456789012:execution:kennel-backup-local-database-restore:r1',
  startedAt: new Date().toISOString(),
});
const plan = (input: unknown) =>
  planRestore(parseConfig(world.env.functionEnv), world.catalog, request(input));

describe('planning a restore', () => {
  it('restores the latest verified full backup into a new database, staged first', async () => {
    const planned = await plan({ database: 'kennel_prod', targetDatabase: 'kennel_restored' });
    expect(planned).toMatchObject({
      target: 'local',
      database: 'kennel_prod',
      targetDatabase: 'kennel_restored',
      overProduction: false,
      manifestKey: `${verified.archive.key}.manifest.json`,
    });
    expect(planned.stagingDatabase).toMatch(/^kb_restoring_\d{8}t\d{6}z_[0-9a-f]{8}$/);
    expect(
      await plan({ database: 'kennel_prod', targetDatabase: 'x', backup: verified.runId }),
    ).toMatchObject({
      manifestKey: `${verified.archive.key}.manifest.json`,
    });
  });

  it('restores over production only with its name typed again in confirm', async () => {
    await expect(plan({ database: 'kennel_prod', targetDatabase: 'kennel_prod' })).rejects.toThrow(
      'add "confirm": "kennel_prod" to the input',
    );
    await expect(
      plan({ database: 'kennel_prod', targetDatabase: 'kennel_prod', confirm: 'kennel_pro' }),
    ).rejects.toMatchObject({ name: 'InvalidInputError' });
    const confirmed = await plan({
      database: 'kennel_prod',
      targetDatabase: 'kennel_prod',
      confirm: 'kennel_prod',
    });
    expect(confirmed.overProduction).toBe(true);
  });

  it.each([
    [
      { database: 'kennel_prod', targetDatabase: 'x', backup: '20200101T000000Z_00000000' },
      'NotFoundError',
      'The newest are:',
    ],
    [
      { database: 'kennel_prod', targetDatabase: 'x; DROP DATABASE kennel_prod' },
      'InvalidInputError',
      'targetDatabase',
    ],
    [{ database: 'kennel_prod' }, 'InvalidInputError', 'targetDatabase'],
    [{ database: 'kennel_prod', targetDatabase: 'x', when: 'now' }, 'InvalidInputError', 'Unrecognized key'],
    [
      { database: 'no_backups_here', targetDatabase: 'x' },
      'NotFoundError',
      'There is no verified full backup',
    ],
  ])('refuses %j', async (input, name, message) => {
    const refused = plan(input);
    await expect(refused).rejects.toMatchObject({ name });
    await expect(refused).rejects.toThrow(message);
  });

  it('refuses a backup that failed verification, saying why', async () => {
    await world.catalog.writeManifest({
      ...verified,
      verification: { state: 'failed', detail: 'sha256 mismatch' },
    });
    try {
      await expect(
        plan({ database: 'kennel_prod', targetDatabase: 'x', backup: verified.runId }),
      ).rejects.toThrow(
        `The backup ${verified.archive.key} is failed (sha256 mismatch); restore only from a verified backup.`,
      );
    } finally {
      await world.catalog.writeManifest(verified);
    }
  });
});

describe('the restore-archive host script', () => {
  function restore(into: string) {
    const script = renderScript('restore-archive', {
      KB_PG_MODE: 'host',
      KB_COMPOSE_FILE: '',
      KB_COMPOSE_SERVICE: '',
      KB_LOCAL_PATH: verified.archive.localPath,
      KB_SHA256: verified.archive.sha256,
      KB_DECOMPRESS: CODECS[verified.archive.compression].decompress,
      KB_INTO: into,
      KB_BUCKET: world.env.bucket,
      KB_ARCHIVE_KEY: verified.archive.key,
      KB_S3_ENDPOINT_URL: world.env.s3Endpoint,
    });
    return runProcess('bash', ['-c', script], world.env.hostEnv);
  }

  it('fetches the archive from S3 when the host no longer has its copy, and restores every row', async () => {
    rmSync(verified.archive.localPath);
    const result = await restore('kennel_from_s3');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('no intact copy');
    for (const [table, rows] of Object.entries(verified.tables)) {
      expect(Number(world.sql('kennel_from_s3', `SELECT count(*) FROM ${table}`)), table).toBe(rows);
    }
  });

  it('never writes into an existing database, and leaves it as it was', async () => {
    const before = world.sql('kennel_from_s3', 'SELECT count(*) FROM bookings');
    const result = await restore('kennel_from_s3');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('the database kennel_from_s3 already exists');
    expect(world.sql('kennel_from_s3', 'SELECT count(*) FROM bookings')).toBe(before);
  });
});
