import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FilesManifest } from '../shared/catalog/manifest.ts';
import { getBytes, type Run, runIn, startWorld, type TestWorld } from './support/environment.ts';

let world: TestWorld;
beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world?.stop();
});

async function filesBackup(input: Record<string, unknown>) {
  const run = await runIn(world, { workflow: 'files-backup', input });
  const key = JSON.stringify(run.record.events).match(/"manifestKey":"([^"]+)"/)?.[1];
  const manifest = key
    ? ((await world.catalog.readManifest(key).catch(() => undefined)) as FilesManifest | undefined)
    : undefined;
  return { run, manifest };
}

/** The tarball's member names, listed by the real tar from the bytes in S3. */
async function members(manifest: FilesManifest): Promise<string[]> {
  const bytes = await getBytes(world.s3, world.env.bucket, manifest.archive.key);
  const listed = spawnSync('bash', ['-c', 'zstd -dc | tar -tf -'], { input: bytes, encoding: 'utf8' });
  expect(listed.status, listed.stderr).toBe(0);
  return listed.stdout.trim().split('\n');
}

const root = () => world.env.paths.hostRoot.replace(/^\//, '');

/** The execution a run lock names, or undefined when there is no lock. */
async function lockHolder(key: string): Promise<string | undefined> {
  const bytes = await getBytes(world.s3, world.env.bucket, key).catch(() => undefined);
  return bytes && (JSON.parse(bytes.toString()) as { executionArn: string }).executionArn;
}

describe('files backups', () => {
  it('configuration: every listed path, encrypted at rest by the bucket, verified by listing', async () => {
    const { run, manifest } = await filesBackup({ kind: 'configuration' });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(manifest?.verification.state).toBe('verified');
    expect(manifest?.missing).toEqual([]);
    expect(manifest?.archive.key).toMatch(
      /^configuration\/local\/\d{4}\/\d{2}\/\d{2}\/local_configuration_\w+\.tar\.zst$/,
    );
    const names = await members(manifest as FilesManifest);
    expect(names.length).toBe(manifest?.entries);
    for (const path of [
      'opt/kennel/.env',
      'opt/kennel/ssl/kennel.crt',
      'etc/fail2ban/jail.local',
      'etc/ufw/ufw.conf',
    ]) {
      expect(names).toContain(`${root()}/${path}`);
    }
    expect(names).not.toContain(`${root()}/opt/kennel/src/app.ts`);
    expect(run.alerts).toEqual([]);
    // The secret the archive holds never shows in what the run printed or logged.
    const env = readFileSync(join(world.env.paths.hostRoot, 'opt/kennel/.env'), 'utf8');
    const password = env.match(/kennel_user:(\w+)@/)?.[1] ?? '';
    expect(password.length).toBeGreaterThan(10);
    expect(run.visibleText).not.toContain(password);
  });

  it("application: the app tree without node_modules, .git, .next, coverage and dist, nor the secrets: .env* anywhere and the root's ssl/", async () => {
    // Code in a directory named ssl below the root stays; an env file anywhere is configuration.
    for (const [path, content] of [
      ['opt/kennel/src/ssl/handshake.ts', 'export {};\n'],
      ['opt/kennel/src/.env.local', 'API_KEY=local-secret\n'],
    ] as const) {
      mkdirSync(dirname(join(world.env.paths.hostRoot, path)), { recursive: true });
      writeFileSync(join(world.env.paths.hostRoot, path), content);
    }
    const { run, manifest } = await filesBackup({ kind: 'application' });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(manifest?.excludes).toEqual([
      'node_modules',
      '.git',
      '.next',
      'coverage',
      'dist',
      '.env*',
      'ssl/',
    ]);
    const names = await members(manifest as FilesManifest);
    expect(names).toContain(`${root()}/opt/kennel/src/app.ts`);
    expect(names).toContain(`${root()}/opt/kennel/public/logo.svg`);
    expect(names).toContain(`${root()}/opt/kennel/src/ssl/handshake.ts`);
    for (const excluded of ['node_modules', '.git', '.next', 'coverage', 'dist', 'ssl/', '.env']) {
      expect(names.filter((n) => n.includes(`/opt/kennel/${excluded}`))).toEqual([]);
    }
    expect(names.filter((n) => n.includes('.env'))).toEqual([]);
  });

  it('static: public/ and the built .next/static and .next/standalone', async () => {
    const { run, manifest } = await filesBackup({ kind: 'static' });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    const names = await members(manifest as FilesManifest);
    expect(names).toContain(`${root()}/opt/kennel/.next/static/chunk.js`);
    expect(names).toContain(`${root()}/opt/kennel/.next/standalone/server.js`);
    expect(names).not.toContain(`${root()}/opt/kennel/src/app.ts`);
  });

  it('a missing path is listed in the manifest and raises a warning alert; the rest is backed up', async () => {
    const present = join(world.env.paths.hostRoot, 'opt/kennel/nginx.conf');
    const absent = join(world.env.paths.hostRoot, 'etc/nginx/conf.d');
    const { run, manifest } = await filesBackup({ kind: 'configuration', paths: [present, absent] });
    expect(run.record.status, run.record.cause).toBe('SUCCEEDED');
    expect(manifest?.missing).toEqual([absent]);
    expect(manifest?.verification.state).toBe('verified');
    expect(await members(manifest as FilesManifest)).toEqual([present.replace(/^\//, '')]);
    expect(run.alerts).toHaveLength(1);
    expect(run.alerts[0]).toMatchObject({ state: 'warning', error: 'Warning', target: 'local' });
    expect(run.alerts[0]?.text).toContain(':warning: kennel-backup (local): files-backup WARNING');
    expect(run.alerts[0]?.cause).toContain(`The configuration backup of local is missing ["${absent}"]`);
  });

  it('fails and alerts when none of the paths exist, recording nothing', async () => {
    const gone = join(world.env.paths.hostRoot, 'opt/kennel/public/gone');
    const { run, manifest } = await filesBackup({ kind: 'static', paths: [gone] });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('BackupRunsFailed');
    expect(run.alerts[0]).toMatchObject({ state: 'CheckArchive', error: 'HostCommandFailedError' });
    expect(run.alerts[0]?.cause).toContain('none of the static paths exist');
    expect(manifest).toBeUndefined();
  });

  it("refuses paths outside the kind's roots before anything reaches the host, naming them and the roots", async () => {
    const secrets = join(world.env.paths.hostRoot, 'etc/fail2ban');
    const inside = join(world.env.paths.hostRoot, 'opt/kennel/public/logo.svg');
    const { run } = await filesBackup({ kind: 'static', paths: [inside, secrets, '/etc/shadow'] });
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('InvalidInputError');
    expect(run.alerts[0]?.state).toBe('PlanFilesBackup');
    const roots = join(world.env.paths.hostRoot, 'opt/kennel/public');
    expect(run.record.cause).toContain(
      `A static backup of local may only archive its static paths or paths under them (${roots}, `,
    );
    expect(run.record.cause).toContain(`; ${secrets}, /etc/shadow are not.`);
    expect(run.record.cause).toContain('Nothing was sent to the host.');
    expect(run.host.sent).toEqual([]);
    // A root's name as a prefix is not a root: /opt/kennel/public-old is outside /opt/kennel/public.
    const sibling = await filesBackup({ kind: 'static', paths: [`${roots}-old`] });
    expect(sibling.run.record.error).toBe('InvalidInputError');
    expect(sibling.run.host.sent).toEqual([]);
  });

  it('the host refuses a path under a root that leads out of it through a symbolic link', async () => {
    const link = join(world.env.paths.hostRoot, 'opt/kennel/public/escape');
    symlinkSync(join(world.env.paths.hostRoot, 'etc'), link);
    try {
      const { run, manifest } = await filesBackup({ kind: 'static', paths: [`${link}/fail2ban`] });
      expect(run.record.status).toBe('FAILED');
      expect(run.alerts[0]).toMatchObject({ state: 'CheckArchive', error: 'HostCommandFailedError' });
      expect(run.alerts[0]?.cause).toContain(
        `files-backup: ${link}/fail2ban leads to ${join(world.env.paths.hostRoot, 'etc/fail2ban')} through a symbolic link, outside the static paths`,
      );
      expect(manifest).toBeUndefined();
    } finally {
      rmSync(link);
    }
  });

  it('a second run of the same kind and target refuses while the first runs, naming it; another kind runs; the lock is given back', async () => {
    let second: Run | undefined;
    let otherKind: Run | undefined;
    const first = await runIn(world, {
      workflow: 'files-backup',
      input: { kind: 'static' },
      beforeTask: async (state) => {
        if (state !== 'VerifyArchive' || second) return;
        second = await runIn(world, { workflow: 'files-backup', input: { kind: 'static' } });
        otherKind = await runIn(world, { workflow: 'files-backup', input: { kind: 'configuration' } });
      },
    });
    expect(first.record.status, first.record.cause).toBe('SUCCEEDED');
    expect(otherKind?.record.status, otherKind?.record.cause).toBe('SUCCEEDED');
    expect(second?.record.status).toBe('FAILED');
    expect(second?.record.error).toBe('RunLockHeldError');
    expect(second?.alerts[0]?.state).toBe('TakeRunLock');
    expect(second?.record.cause).toContain(
      `Another files-backup run holds locks/local/static: execution ${first.record.executionArn}, started `,
    );
    expect(second?.record.cause).toContain('this one stopped before changing anything');
    expect(second?.host.sent).toEqual([]);
    await expect(lockHolder('locks/local/static')).resolves.toBeUndefined();
  });

  it('the lock of an aborted run is taken over by the next run', async () => {
    const abort = new AbortController();
    const aborted = await runIn(world, {
      workflow: 'files-backup',
      input: { kind: 'static' },
      signal: abort.signal,
      beforeTask: async (state) => {
        if (state === 'VerifyArchive') abort.abort();
      },
    });
    expect(aborted.record.status).toBe('ABORTED');
    expect(await lockHolder('locks/local/static')).toBe(aborted.record.executionArn);
    const next = await runIn(world, { workflow: 'files-backup', input: { kind: 'static' } });
    expect(next.record.status, next.record.cause).toBe('SUCCEEDED');
    await expect(lockHolder('locks/local/static')).resolves.toBeUndefined();
  });

  it.each([
    ['an unknown kind', { kind: 'photos' }, 'kind: Invalid option'],
    ['no kind', {}, 'kind: Invalid option'],
    [
      'a path with ..',
      { kind: 'configuration', paths: ['/opt/kennel/../../etc/shadow'] },
      'must not contain ..',
    ],
    [
      'a path with shell metacharacters',
      { kind: 'configuration', paths: ['/opt/kennel/$(reboot)'] },
      'must be an absolute path',
    ],
    ['a relative path', { kind: 'application', paths: ['opt/kennel'] }, 'must be an absolute path'],
  ])('refuses %s before anything reaches the host', async (_name, input, message) => {
    const { run } = await filesBackup(input);
    expect(run.record.status).toBe('FAILED');
    expect(run.record.error).toBe('InvalidInputError');
    expect(run.alerts[0]?.state).toBe('PlanFilesBackup');
    expect(run.alerts[0]?.cause).toContain(message);
    expect(run.host.sent).toEqual([]);
  });
});
