import { createReadStream, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { archiveProblems, readArchive } from '../shared/catalog/archive-check.ts';
import { databaseManifestSchema } from '../shared/catalog/manifest.ts';

/**
 * Child process of bench/run.ts: runs the verify stage's readArchive on a local
 * archive and prints its memory as JSON. A process of its own, so that its peak
 * RSS (getrusage, what `/usr/bin/time -v` reports) is the verify stage's alone,
 * not the benchmark's with its S3 server and workflow runner.
 *
 *   node bench/verify-memory.ts <archive> <manifest.json>
 */

const [archivePath, manifestPath] = process.argv.slice(2);
if (!archivePath || !manifestPath) {
  console.error('Usage: node bench/verify-memory.ts <archive> <manifest.json>');
  process.exit(2);
}
const manifest = databaseManifestSchema.parse(JSON.parse(readFileSync(manifestPath, 'utf8')));

const before = process.memoryUsage();
let peakSampled = before.rss;
// Sampled between stream chunks; maxRSS below catches whatever a sample misses.
const sampler = setInterval(() => {
  peakSampled = Math.max(peakSampled, process.memoryUsage.rss());
}, 10);
const started = performance.now();
const facts = await readArchive(createReadStream(archivePath), manifest);
const ms = performance.now() - started;
clearInterval(sampler);
const after = process.memoryUsage();

console.log(
  JSON.stringify({
    ms,
    rssBefore: before.rss,
    rssPeakSampled: Math.max(peakSampled, after.rss),
    rssAfter: after.rss,
    maxRss: process.resourceUsage().maxRSS * 1024,
    heapUsedBefore: before.heapUsed,
    heapUsedAfter: after.heapUsed,
    size: facts.size,
    uncompressedSize: facts.uncompressedSize,
    problems: archiveProblems(facts, manifest),
  }),
);
