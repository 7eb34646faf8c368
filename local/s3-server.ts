import { mkdirSync, readFileSync } from 'node:fs';
import S3rver from 's3rver';

/**
 * The local S3 server's own process (started by local/s3.ts startLocalS3):
 * `s3-server.ts <data dir> <bucket> <key.pem> <cert.pem> [port]`. Prints `listening <port>`
 * once it serves HTTPS on 127.0.0.1 (on `port`, or a free one), and stops when its
 * stdin closes (its parent ended or called stop()).
 */
const [directory, bucket, keyFile, certFile, fixedPort] = process.argv.slice(2);
if (!directory || !bucket || !keyFile || !certFile) {
  console.error('usage: s3-server.ts <data dir> <bucket> <key.pem> <cert.pem> [port]');
  process.exit(2);
}
mkdirSync(directory, { recursive: true });
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(fixedPort ?? 0),
  silent: true,
  directory,
  key: readFileSync(keyFile),
  cert: readFileSync(certFile),
  configureBuckets: [{ name: bucket }],
});
const { port } = await server.run();
process.stdout.write(`listening ${port}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void server.close().then(() => process.exit(0));
});
