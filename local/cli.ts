import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLocalEnvironment } from './environment.ts';
import { localHost } from './host.ts';
import { PROJECT_ROOT, runWorkflow, workflows } from './runner.ts';

const USAGE = `Usage: npm run local -- start <workflow> [--input '<json>']

Runs a workflow (built by statemachines/) in-process with the real handlers.
Workflows: ${workflows().join(', ')}

Environment (all optional):
  DATABASE_URL        back up this database instead of a throwaway sample cluster
  S3_ENDPOINT_URL     use this S3-compatible server instead of the local one (HTTPS)
  AWS_CA_BUNDLE       the CA certificate of S3_ENDPOINT_URL, if not a public one
  KENNEL_BACKUP_DIR   local state (S3 data, host backups, histories, alerts); default .local
  SEED_SCALE          size of the sample database (1 ≈ a few MB)`;

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { input: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [command, workflow] = positionals;
  if (values.help || command !== 'start' || !workflow) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  if (!workflows().includes(workflow)) {
    console.error(`Unknown workflow "${workflow}". Known workflows: ${workflows().join(', ')}.`);
    return 2;
  }
  let input: unknown = {};
  if (values.input !== undefined) {
    try {
      input = JSON.parse(values.input);
    } catch (error) {
      console.error(
        `--input is not valid JSON (${(error as Error).message}); give it as --input '{"database": "kennel_prod"}'.`,
      );
      return 2;
    }
  }

  const dataDir = process.env.KENNEL_BACKUP_DIR ?? join(PROJECT_ROOT, '.local');
  console.error(`Starting local services (state in ${dataDir}) …`);
  const environment = await startLocalEnvironment({
    dataDir,
    databaseUrl: process.env.DATABASE_URL,
    s3Endpoint: process.env.S3_ENDPOINT_URL,
    s3CaBundle: process.env.AWS_CA_BUNDLE,
    seedScale: Number(process.env.SEED_SCALE ?? 1),
  });
  try {
    Object.assign(process.env, environment.functionEnv);
    console.error(
      `PostgreSQL ${environment.postgres.host}:${environment.postgres.port}/${environment.database}, S3 ${environment.s3Endpoint}/${environment.bucket}`,
    );
    console.error(`Execution of ${workflow}:`);
    // The functions' own log lines (and CloudWatch metric lines) go to stderr:
    // stdout carries the execution's output alone, for a pipe to read.
    const stdoutWrite = process.stdout.write;
    process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
    let record: Awaited<ReturnType<typeof runWorkflow>>;
    try {
      record = await runWorkflow(
        {
          workflow,
          input,
          historyDir: environment.paths.historyDir,
          progress: (line) => console.error(line),
        },
        {
          host: localHost(environment.hostEnv),
          databaseUrl: environment.postgres.url,
          alertsFile: environment.paths.alertsFile,
          print: (line) => console.error(line),
        },
      );
    } finally {
      process.stdout.write = stdoutWrite;
    }
    console.log(
      JSON.stringify(
        record.status === 'SUCCEEDED' ? record.output : { error: record.error, cause: record.cause },
        null,
        2,
      ),
    );
    console.error(`${record.status}; history: ${record.historyFile}`);
    return record.status === 'SUCCEEDED' ? 0 : 1;
  } finally {
    await environment.stop();
  }
}

process.exitCode = await main().catch((error: unknown) => {
  console.error(`local runner: ${(error as Error).message}`);
  return 1;
});
