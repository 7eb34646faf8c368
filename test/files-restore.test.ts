import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FilesManifest } from '../shared/catalog/manifest.ts';
import { parseComment } from '../shared/host/commands.ts';
import { putBytes, runIn, startWorld, type TestWorld } from './support/environment.ts';

let world: TestWorld;
const backups: Partial<Record<'configuration' | 'application', FilesManifest>> = {};

beforeAll(async () => {
  world = await startWorld();
  for (const kind of ['configuration', 'application'] as const) {
    const run = await runIn(world, { workflow: 'files-backup', input: { kind } });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const key = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1] ?? '';
    backups[kind] = (await world.catalog.readManifest(key)) as FilesManifest;
  }
});
afterAll(async () => {
  await world?.stop();
});

/** Every file under the sample host's /opt/kennel and /etc, with a checksum of its bytes. */
function snapshot(): Record<string, string> {
  const root = world.env.paths.hostRoot;
  const files: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else files[relative(root, path)] = createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  walk(root);
  return files;
}

const hostFile = (path: string) => join(world.env.paths.hostRoot, path);
const restore = (input: unknown) => runIn(world, { workflow: 'files-restore', input });

describe('the files-restore workflow', () => {
  it('configuration round trip: the backed-up files are back, the previous ones kept aside, the follow-up commands run', async () => {
    const atBackup = snapshot();
    writeFileSync(hostFile('opt/kennel/nginx.conf'), 'server { broken }\n');
    rmSync(hostFile('etc/fail2ban/jail.local'));
    const damaged = snapshot();

    const run = await restore({ kind: 'configuration', confirm: 'configuration' });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(snapshot()).toEqual(atBackup);

    const output = run.record.output as {
      keptAside: string;
      from: { key: string }[];
      checks: string[];
      stages: { stage: string; seconds: number }[];
    };
    expect(output.from.map((f) => f.key)).toEqual([backups.configuration?.archive.key]);
    expect(output.stages.map((s) => s.stage)).toEqual([
      'check, set aside and extract',
      'commands after the restore',
    ]);
    expect(output.checks).toContain(
      `the tarball listed completely: ${backups.configuration?.entries} entries, as its manifest says`,
    );
    // The files as they were before the restore: the broken nginx.conf, no jail.local.
    const aside = spawnSync(
      'bash',
      ['-c', `zstd -dc '${output.keptAside}' | tar -xO -f - '${hostFile('opt/kennel/nginx.conf').slice(1)}'`],
      { encoding: 'utf8' },
    );
    expect(aside.stdout).toBe('server { broken }\n');
    const listed = spawnSync('bash', ['-c', `zstd -dc '${output.keptAside}' | tar -t -f -`], {
      encoding: 'utf8',
    }).stdout;
    expect(listed).not.toContain('etc/fail2ban/jail.local');
    expect(Object.keys(damaged)).not.toContain('etc/fail2ban/jail.local');

    expect(readFileSync(world.env.paths.afterRestoreLog, 'utf8')).toBe('configuration restored: reload\n');
    expect(run.host.sent.map((s) => parseComment(s.comment)?.script)).toEqual([
      'files-restore',
      'after-files-restore',
    ]);
    expect(run.alerts[0]?.text).toContain(
      `configuration files restored on local from ${backups.configuration?.archive.key}`,
    );
    expect(run.record.output).toMatchObject({ readFrom: 'host' });
    // The tarball holds the application's secrets; none reaches a command, the history, a log or an alert.
    const password = /kennel_user:([0-9a-f]+)@/.exec(readFileSync(hostFile('opt/kennel/.env'), 'utf8'))?.[1];
    expect(password).toMatch(/^[0-9a-f]{24}$/);
    expect(run.visibleText).not.toContain(password);
  });

  it('application round trip: changed and deleted source files come back; what the tarball leaves out stays', async () => {
    const atBackup = snapshot();
    writeFileSync(hostFile('opt/kennel/src/app.ts'), 'export const app = "broken";\n');
    rmSync(hostFile('opt/kennel/package.json'));
    writeFileSync(hostFile('opt/kennel/node_modules/left-pad/index.js'), 'reinstalled\n');

    const run = await restore({
      kind: 'application',
      confirm: 'application',
      backup: backups.application?.runId,
    });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const after = snapshot();
    expect(after['opt/kennel/src/app.ts']).toBe(atBackup['opt/kennel/src/app.ts']);
    expect(after['opt/kennel/package.json']).toBe(atBackup['opt/kennel/package.json']);
    // node_modules is not in the tarball: the follow-up commands reinstall it, the restore leaves it.
    expect(readFileSync(hostFile('opt/kennel/node_modules/left-pad/index.js'), 'utf8')).toBe('reinstalled\n');
    expect(readFileSync(world.env.paths.afterRestoreLog, 'utf8')).toContain(
      'application restored: reinstall, build, restart\n',
    );
  });
});

describe('files restore refusals change nothing', () => {
  it.each([
    ['without confirm', { kind: 'configuration' }, 'InvalidInputError', 'add "confirm": "configuration"'],
    [
      'a confirm for another kind',
      { kind: 'application', confirm: 'configuration' },
      'InvalidInputError',
      `"confirm" does not match: it must be exactly the kind's name, application (it was "configuration")`,
    ],
    [
      'an unknown backup',
      { kind: 'configuration', confirm: 'configuration', backup: '20200101T000000Z_00000000' },
      'NotFoundError',
      'No configuration backup "20200101T000000Z_00000000"',
    ],
    [
      'a kind without backups',
      { kind: 'static', confirm: 'static' },
      'NotFoundError',
      'There is no verified static backup',
    ],
    ['an unknown kind', { kind: 'database', confirm: 'database' }, 'InvalidInputError', 'kind'],
  ])('%s', async (_what, input, error, message) => {
    const before = snapshot();
    const run = await restore(input);
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe(error);
    expect(run.record.cause).toContain(message);
    expect(run.host.sent).toEqual([]);
    expect(snapshot()).toEqual(before);
  });

  it('a dry run shows the plan without confirm, and changes nothing', async () => {
    const before = snapshot();
    const run = await restore({ kind: 'configuration', dryRun: true });
    expect(run.record.status).toBe('SUCCEEDED');
    expect(run.record.output).toMatchObject({
      dryRun: true,
      plan: {
        archive: { key: backups.configuration?.archive.key },
        afterCommands: [expect.stringContaining('reload')],
      },
    });
    expect(run.host.sent).toEqual([]);
    expect(snapshot()).toEqual(before);
  });

  it('a corrupted tarball: the host refuses it before touching a file, and the alert says so', async () => {
    const manifest = backups.configuration as FilesManifest;
    writeFileSync(hostFile('opt/kennel/nginx.conf'), 'server { changed after the backup }\n');
    const before = snapshot();
    const asideDir = join(world.env.paths.backupDir, 'restore-aside');
    const asideBefore = readdirSync(asideDir);
    rmSync(manifest.archive.localPath);
    await putBytes(world.s3, world.env.bucket, manifest.archive.key, 'not a tarball');
    const run = await restore({ kind: 'configuration', confirm: 'configuration' });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('HostCommandFailedError');
    expect(run.record.cause).toContain(
      'do not restore from it: restore the vault\'s copy of it instead (the same input with "source": "vault"), or an older backup (its run id as "backup"; info lists them)',
    );
    expect(run.alerts[0]?.text).toContain('The configuration files are as they were');
    expect(snapshot()).toEqual(before);
    // Refused before the files were set aside: nothing new on the host either.
    expect(readdirSync(asideDir)).toEqual(asideBefore);
  });
});
