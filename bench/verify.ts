import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { psql } from '../local/environment.ts';
import { type LocalCluster, startPostgres } from '../local/postgres.ts';
import { archiveFileName, archiveKey, runId } from '../shared/catalog/keys.ts';
import type { DatabaseManifest } from '../shared/catalog/manifest.ts';
import { CODECS } from '../shared/core/codecs.ts';
import { shellQuote } from '../shared/host/shell.ts';
import {
  cleanUp,
  log,
  machine,
  machineLine,
  onInterrupt,
  readArchiveInChild,
  readCommandLine,
  runMain,
  type Stats,
  saveResult,
  sh,
  stats,
  stopOnce,
  type VerifyReading,
  wholeNumber,
  wholeNumbers,
} from './harness.ts';
import { MiB, mib, ratio, table } from './table.ts';

/**
 * Whether VerifyArchive's time grows linearly with the archive (issue 12, point 6:
 * one 30 MiB bytea value once took 93 s, 15 MiB 26 s). For each size, two real
 * pg_dump archives (plain, `zstd -3 -T0`, as host/database-backup.sh writes them)
 * of a throwaway cluster:
 *  - single: one row holding one bytea value of that many MiB (its COPY line is
 *    twice that long, in hex);
 *  - rows: a table of ordinary rows whose dump is that many MiB.
 * Each is read by the verify stage's readArchive (sha256, decompression, the row
 * counter) in a child process of its own (bench/verify-memory.ts: its time and peak
 * memory alone), alternating with the bare `zstd -d -c archive > /dev/null`, the
 * floor any verification of a zstd archive pays. Linear means ms per MiB stays flat
 * from the reference size (10 MiB, or the smallest measured if not) to the largest:
 * the smallest archives' figures are mostly the child's start and the modules' load.
 *
 *   npm run bench:verify -- [--sizes 1,10,50,100,200] [--repeat 3]
 */

const USAGE = `Usage: npm run bench:verify -- [--sizes 1,10,50,100,200] [--repeat N]

  --sizes LIST   archive sizes in MiB of dump text (default 1,10,50,100,200)
  --repeat N     timed reads of every archive, each beside a bare zstd -d (default 3); medians

Results: a table on stdout and JSON in bench/results/verify-<timestamp>.json.`;

/** Bytes of dump text per row of the rows table (id, two md5s, a timestamp), near enough to size it. */
const ROW_BYTES = 100;

type Shape = 'single' | 'rows';

interface Archive {
  shape: Shape;
  mib: number;
  path: string;
  dumpBytes: number;
  bytes: number;
}

/** A database whose dump is `size` MiB, dumped and compressed as the host does. */
async function makeArchive(cluster: LocalCluster, dir: string, shape: Shape, size: number): Promise<Archive> {
  const database = `kb_${shape}_${size}`;
  psql(cluster, 'postgres', ['-c', `CREATE DATABASE ${database}`]);
  if (shape === 'single') {
    // 16 bytes of md5 per row aggregated: a value that does not compress to nothing.
    psql(cluster, database, [
      '-c',
      `CREATE TABLE blob (id int, data bytea);
       INSERT INTO blob SELECT 1, decode(string_agg(md5(g::text), '' ORDER BY g), 'hex') FROM generate_series(1, ${size * 65_536}) g;`,
    ]);
  } else {
    psql(cluster, database, [
      '-c',
      `CREATE TABLE visits AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b,
         timestamptz '2026-01-01' + g * interval '1 second' AS at
       FROM generate_series(1, ${Math.round((size * MiB) / ROW_BYTES)}) g;`,
    ]);
  }
  const plain = join(dir, `${database}.sql`);
  const path = `${plain}.${CODECS.zstd.extension}`;
  const env = {
    ...process.env,
    ...cluster.env,
    PATH: `${cluster.binDir}:${process.env.PATH ?? ''}`,
  } as Record<string, string>;
  await sh(`pg_dump --no-password --format=plain -d ${database} > ${shellQuote(plain)}`, env);
  await sh(`${CODECS.zstd.compress} < ${shellQuote(plain)} > ${shellQuote(path)}`, env);
  const dumpBytes = statSync(plain).size;
  rmSync(plain);
  psql(cluster, 'postgres', ['-c', `DROP DATABASE ${database}`]);
  return { shape, mib: size, path, dumpBytes, bytes: statSync(path).size };
}

/** A manifest that verify-memory.ts parses: readArchive reads only its archive's compression. */
function manifestOf(archive: Archive): DatabaseManifest {
  const at = '2026-01-01T02:00:00.000Z';
  const id = runId(at, archive.path);
  const file = archiveFileName(`kb_${archive.shape}_${archive.mib}`, 'full', id, 'zstd');
  const key = archiveKey('full', 'local', `kb_${archive.shape}_${archive.mib}`, at, file);
  return {
    version: 2,
    kind: 'full',
    target: 'local',
    database: `kb_${archive.shape}_${archive.mib}`,
    runId: id,
    executionId: 'bench',
    archive: {
      key,
      localPath: archive.path,
      fileName: file,
      size: archive.bytes,
      sha256: '0'.repeat(64),
      format: 'plain',
      compression: 'zstd',
    },
    window: { since: null, until: at },
    startedAt: at,
    finishedAt: at,
    serverVersion: '150000',
    excludedTables: [],
    tables: [],
    properties: null,
    verification: { state: 'unverified' },
  };
}

/** readArchive on the archive in a child process of its own: its time and peak memory alone. */
async function verify(archive: Archive, manifestPath: string): Promise<VerifyReading> {
  const read = await readArchiveInChild(archive.path, manifestOf(archive), manifestPath);
  // The sha256 is a stand-in: every other problem is a real one.
  const problems = read.problems.filter((p) => !p.startsWith('sha256 is '));
  if (problems.length > 0)
    throw new Error(`readArchive found problems in ${archive.path}: ${problems.join('; ')}`);
  return read;
}

interface Measured {
  archive: Archive;
  verify: Stats;
  bareZstd: Stats;
  maxRss: number;
}

async function main(): Promise<number> {
  const values = readCommandLine(USAGE, {
    sizes: { type: 'string', default: '1,10,50,100,200' },
    repeat: { type: 'string', default: '3' },
  });
  if (!values) return 0;
  const sizes = wholeNumbers(values.sizes);
  const repeat = wholeNumber(values.repeat, 1);
  if (!sizes || repeat === undefined) {
    console.error(`Bad arguments: ${JSON.stringify(values)}\n\n${USAGE}`);
    return 2;
  }
  const startedAt = new Date();
  const tmp = mkdtempSync(join(tmpdir(), 'kennel-backup-bench-verify-'));
  let cluster: LocalCluster | undefined;
  const stopCluster = stopOnce('the PostgreSQL cluster', () => cluster);
  onInterrupt(() => void stopCluster());
  try {
    cluster = await startPostgres();
    const shellEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const measured: Measured[] = [];
    for (const shape of ['single', 'rows'] as const) {
      for (const size of sizes) {
        log(`${shape} ${size} MiB: dumping …`);
        const archive = await makeArchive(cluster, tmp, shape, size);
        const manifestPath = join(tmp, `${shape}-${size}.manifest.json`);
        const verifyMs: number[] = [];
        const bareMs: number[] = [];
        let maxRss = 0;
        for (let i = 0; i < repeat; i += 1) {
          log(`${shape} ${size} MiB: read ${i + 1} of ${repeat} …`);
          const read = await verify(archive, manifestPath);
          if (read.uncompressedSize !== archive.dumpBytes)
            throw new Error(`readArchive read ${read.uncompressedSize} bytes of ${archive.dumpBytes}.`);
          verifyMs.push(read.ms);
          maxRss = Math.max(maxRss, read.maxRss);
          bareMs.push(
            (await sh(`${CODECS.zstd.decompress} < ${shellQuote(archive.path)} > /dev/null`, shellEnv)).ms,
          );
        }
        measured.push({ archive, verify: stats(verifyMs), bareZstd: stats(bareMs), maxRss });
      }
    }
    const perMib = (m: Measured) => m.verify.median / (m.archive.dumpBytes / MiB);
    // 10 MiB if measured: below it the child's start and module load weigh more than the reading.
    const reference = (shape: Shape) =>
      (measured.find((m) => m.archive.shape === shape && m.archive.mib === 10) ??
        measured.find((m) => m.archive.shape === shape)) as Measured;
    const rows = measured.map((m) => [
      `${m.archive.shape} ${m.archive.mib} MiB`,
      mib(m.archive.dumpBytes),
      mib(m.archive.bytes),
      m.verify.median.toFixed(0),
      perMib(m).toFixed(1),
      ratio(perMib(m) / perMib(reference(m.archive.shape))),
      ratio(m.verify.median / m.bareZstd.median),
      mib(m.maxRss, 0),
    ]);
    const result = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: { sizes, repeat },
      machine: machine(),
      notes: [
        "Medians of the runs. 'per MiB vs reference' is ms per MiB of dump text over that of the 10 MiB archive of the same shape (the smallest if none): flat at 1.00× or below up to the largest is linear.",
        "'vs bare zstd -d' is readArchive's time over `zstd -d -c > /dev/null` of the same archive, run beside it.",
      ],
      measured,
    };
    const resultFile = saveResult('verify', startedAt, result);
    console.log(
      [
        `kennel-backup verify bench: ${repeat} run(s) each; ${machineLine()}`,
        '',
        table(
          [
            'archive',
            'dump MiB',
            'zstd MiB',
            'verify ms',
            'ms per MiB',
            'per MiB vs reference',
            'vs bare zstd -d',
            'peak RSS MiB',
          ],
          rows,
        ),
        '',
        `JSON: ${resultFile}`,
      ].join('\n'),
    );
    return 0;
  } finally {
    await cleanUp(tmp, stopCluster);
  }
}

await runMain(main);
