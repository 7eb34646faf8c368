import { mkdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import S3rver from 's3rver';

/**
 * The local S3 server's own process (started by local/s3.ts startLocalS3):
 * `s3-server.ts [--port N] [--detached] <data dir> <bucket> <key.pem> <cert.pem>`.
 * Prints `listening <port>` once it serves HTTPS on 127.0.0.1. It stops when its
 * stdin closes (its parent ended or called stop()); detached (`npm run local --
 * up`), it outlives its parent and stops on SIGTERM.
 */
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { port: { type: 'string', default: '0' }, detached: { type: 'boolean', default: false } },
});
const [directory, bucket, keyFile, certFile] = positionals;
if (!directory || !bucket || !keyFile || !certFile) {
  console.error('usage: s3-server.ts [--port N] [--detached] <data dir> <bucket> <key.pem> <cert.pem>');
  process.exit(2);
}
mkdirSync(directory, { recursive: true });
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(values.port),
  silent: true,
  directory,
  key: readFileSync(keyFile),
  cert: readFileSync(certFile),
  configureBuckets: [{ name: bucket }],
});
const { port } = await server.run();
process.stdout.write(`listening ${port}\n`);
const close = () => {
  void server.close().then(() => process.exit(0));
};
if (values.detached) {
  process.once('SIGTERM', close);
  process.once('SIGINT', close);
} else {
  process.stdin.resume();
  process.stdin.on('end', close);
}
