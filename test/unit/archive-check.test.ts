import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { archiveProblems, readArchive } from '../../shared/catalog/archive-check.ts';
import type { DatabaseManifest as Manifest } from '../../shared/catalog/manifest.ts';
import { PROPERTIES, propertiesLine } from '../support/manifests.ts';

const DUMP = [
  propertiesLine(),
  '--',
  '-- PostgreSQL database dump',
  '--',
  '',
  '\\restrict abc',
  ...Array.from({ length: 5000 }, (_, i) => `INSERT INTO t VALUES (${i});`),
  '--',
  '-- PostgreSQL database dump complete',
  '--',
  '',
  '\\unrestrict abc',
  '',
].join('\n');

function manifestFor(bytes: Buffer, compression: 'zstd' | 'gzip', tables: Manifest['tables'] = []): Manifest {
  return {
    archive: {
      key: 'database/full/x.sql',
      size: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      compression,
      format: 'plain',
    },
    tables,
  } as Manifest;
}

/** What archiveProblems finds in an archive whose manifest has its size and sha256. */
async function problemsOf(archive: Buffer): Promise<string[]> {
  const manifest = manifestFor(archive, 'zstd');
  return archiveProblems(await readArchive(Readable.from([archive]), manifest), manifest);
}

describe('readArchive and archiveProblems', () => {
  it.each([
    ['zstd', zstdCompressSync],
    ['gzip', gzipSync],
  ] as const)('accept a complete %s dump whose size and sha256 match', async (codec, compress) => {
    const bytes = compress(Buffer.from(DUMP));
    const manifest = manifestFor(bytes, codec);
    const facts = await readArchive(Readable.from([bytes.subarray(0, 100), bytes.subarray(100)]), manifest);
    expect(facts.uncompressedSize).toBe(Buffer.byteLength(DUMP));
    expect(facts.properties).toEqual(PROPERTIES);
    expect(archiveProblems(facts, manifest)).toEqual([]);
  });

  it("read the database's properties from a line longer than the stream's chunks, and name a line that is not theirs", async () => {
    // 5,000 roles: a line of some MB, which reaches the reader in many pieces.
    const [role] = PROPERTIES.roles;
    const many = {
      ...PROPERTIES,
      roles: Array.from({ length: 5000 }, (_, i) => ({ ...role, name: `role_${i}` })),
    };
    const long = zstdCompressSync(Buffer.from(DUMP.replace(propertiesLine(), propertiesLine(many))));
    const facts = await readArchive(Readable.from([long]), manifestFor(long, 'zstd'));
    expect(facts.properties).toEqual(many);
    expect(facts.header).toBe('--\n-- PostgreSQL database dump\n--');
    const without = await problemsOf(zstdCompressSync(Buffer.from(DUMP.slice(DUMP.indexOf('\n') + 1))));
    expect(without).toContain(
      "it does not start with the line of its database's properties that database-backup.sh writes",
    );
    const bad = zstdCompressSync(
      Buffer.from(DUMP.replace(propertiesLine(), propertiesLine({ encoding: 'UTF8' }))),
    );
    expect(await problemsOf(bad)).toEqual([
      expect.stringMatching(/^its database's properties are not what database-backup.sh writes \(collate: /),
    ]);
  });

  it('name a dump cut short before its closing line, and a wrong size and sha256', async () => {
    const truncated = zstdCompressSync(
      Buffer.from(DUMP.slice(0, DUMP.indexOf('-- PostgreSQL database dump complete'))),
    );
    const manifest = manifestFor(zstdCompressSync(Buffer.from(DUMP)), 'zstd');
    const problems = archiveProblems(await readArchive(Readable.from([truncated]), manifest), manifest);
    expect(problems).toEqual([
      expect.stringMatching(/^size is \d+ bytes, the manifest says \d+$/),
      expect.stringMatching(/^sha256 is [0-9a-f]{64}, the manifest says [0-9a-f]{64}$/),
      'the dump is truncated: its closing line is missing',
    ]);
  });

  it("name a dump cut short inside a table's data, even after a row that reads like the closing line", async () => {
    const rows = ['1\t--', '2\t-- PostgreSQL database dump complete', '3\t--', '4\t', '5\t\\unrestrict abc'];
    const cut = [
      ...DUMP.split('\n').slice(0, 6),
      '-- Data for Name: notes; Type: TABLE DATA; Schema: public; Owner: kennel',
      'COPY public.notes (id, body) FROM stdin;',
      ...rows,
      '',
    ].join('\n');
    expect(await problemsOf(zstdCompressSync(Buffer.from(cut)))).toEqual([
      'the dump is truncated: it ends inside the data of public.notes',
    ]);
  });

  it('name something that is not a PostgreSQL dump', async () => {
    const bytes = zstdCompressSync(
      Buffer.from(`${propertiesLine()}\nhello\n-- PostgreSQL database dump complete\n`),
    );
    const manifest = manifestFor(bytes, 'zstd');
    expect(archiveProblems(await readArchive(Readable.from([bytes]), manifest), manifest)).toEqual([
      'it does not start as a PostgreSQL plain-format dump',
    ]);
  });

  it.each([
    ['zstd', zstdCompressSync],
    ['gzip', gzipSync],
  ] as const)('call damaged %s data corrupt', async (codec, compress) => {
    const bytes = compress(Buffer.from(DUMP));
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] ?? 0) ^ 0xff;
    bytes[bytes.length - 9] = (bytes[bytes.length - 9] ?? 0) ^ 0xff;
    const result = await readArchive(
      Readable.from([bytes.subarray(0, bytes.length - 5)]),
      manifestFor(bytes, codec),
    ).catch((e: unknown) => e as Error);
    expect(result).toMatchObject({ name: 'ArchiveCorruptError' });
  });

  it('do not call an archive corrupt when the connection breaks', async () => {
    const bytes = zstdCompressSync(Buffer.from(DUMP));
    const broken = new Readable({
      read() {
        this.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
      },
    });
    const result = await readArchive(broken, manifestFor(bytes, 'zstd')).catch((e: unknown) => e as Error);
    expect(result).toMatchObject({ name: 'TransientError' });
  });
});
