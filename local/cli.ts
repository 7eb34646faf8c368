import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { auditReportInputSchema } from '../shared/audit/gather.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { parseConfig } from '../shared/core/config.ts';
import { parseInput } from '../shared/core/input.ts';
import { type LocalEnvironment, type LocalEnvironmentOptions, physicalKindsRefusal } from './environment.ts';
import { localHost } from './host.ts';
import { type ExecutionRecord, PROJECT_ROOT, runWorkflow, workflows } from './runner.ts';
import { downLocalStack, openLocalStack, resetLocalStack, upLocalStack } from './stack.ts';

const USAGE = `Usage: npm run local -- <command>

  up                                   start the local stack and leave it running; its last
                                       line on stdout is one JSON object: databaseUrl, pgData,
                                       s3Endpoint, bucket, ...
  down                                 stop it
  reset                                stop it and delete the local state
  start <workflow> [--input '<json>']  run a workflow (built by statemachines/) in-process with
                                       the real handlers, on the running stack or on one started
                                       and stopped around the run
  report [--month YYYY-MM] [--budget USD]
                                       the monthly audit report on demand (the audit-report
                                       workflow; the month before this one by default), from the
                                       exported execution histories and the catalog in the local
                                       bucket; also written to <KENNEL_BACKUP_DIR>/reports/

Workflows: ${workflows().join(', ')}

Environment (all optional):
  KENNEL_BACKUP_DIR   local state (the cluster, S3 data, host backups, histories, alerts); default .local
  DATABASE_URL        back up this database instead of the local sample cluster
  PGDATA              with DATABASE_URL: that cluster's data directory on this machine, for the
                      physical kinds (pgBackRest)
  S3_ENDPOINT_URL     use this S3-compatible server instead of the local one (HTTPS)
  AWS_CA_BUNDLE       the CA certificate of S3_ENDPOINT_URL, if not a public one
  SEED_SCALE          size of the sample database when the local cluster is first made (1 ≈ a few MB)`;

/** How long after a Ctrl-C another SIGINT is the same keypress, forwarded by npm. */
const INTERRUPT_ECHO_MS = 2_000;

/** The kinds of database-backup that are pgBackRest's alone; a full backup also has its logical dump. */
const PHYSICAL_KINDS = new Set(['incremental', 'transaction-logs']);

function stackOptions(): LocalEnvironmentOptions {
  return {
    dataDir: process.env.KENNEL_BACKUP_DIR ?? join(PROJECT_ROOT, '.local'),
    databaseUrl: process.env.DATABASE_URL,
    pgData: process.env.DATABASE_URL ? process.env.PGDATA : undefined,
    s3Endpoint: process.env.S3_ENDPOINT_URL,
    s3CaBundle: process.env.AWS_CA_BUNDLE,
    seedScale: Number(process.env.SEED_SCALE ?? 1),
  };
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      input: { type: 'string' },
      month: { type: 'string' },
      budget: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, workflow] = positionals;
  if (values.help) {
    console.error(USAGE);
    return 0;
  }
  const options = stackOptions();
  switch (command) {
    case 'up': {
      console.error(`Starting the local stack (state in ${options.dataDir}) …`);
      // The last line on stdout, for a script to read.
      console.log(JSON.stringify(await upLocalStack(options)));
      return 0;
    }
    case 'down':
    case 'reset': {
      const stopped = await (command === 'down' ? downLocalStack : resetLocalStack)(options.dataDir);
      console.error(
        `${stopped.length > 0 ? `Stopped ${stopped.join(' and ')}` : 'Nothing was running'}${command === 'reset' ? `; deleted the local state in ${options.dataDir}` : ''}.`,
      );
      return 0;
    }
    case 'start':
      if (workflow) return start(workflow, values.input, options);
      break;
    case 'report':
      return report(values.month, values.budget, options);
  }
  console.error(USAGE);
  return 2;
}

/**
 * `report`: the audit-report workflow with `{"month": …, "budgetUsd": …}`, as an
 * operator starts it from the console; its three files are then copied from the
 * local bucket to <KENNEL_BACKUP_DIR>/reports/ to be opened.
 */
async function report(
  month: string | undefined,
  budget: string | undefined,
  options: LocalEnvironmentOptions,
) {
  const input = {
    ...(month === undefined ? {} : { month }),
    ...(budget === undefined ? {} : { budgetUsd: Number(budget) }),
  };
  try {
    parseInput(auditReportInputSchema, input, '--month and --budget');
  } catch (error) {
    console.error(`${(error as Error).message}\n(--month 2026-11 --budget 40)`);
    return 2;
  }
  return start('audit-report', JSON.stringify(input), options, async (environment, record) => {
    if (record.status !== 'SUCCEEDED') return;
    const { keys } = record.output as { keys: Record<string, string> };
    const s3 = createS3Client(parseConfig(environment.functionEnv));
    const dir = join(options.dataDir, 'reports');
    mkdirSync(dir, { recursive: true });
    for (const key of Object.values(keys)) {
      const object = await s3.send(new GetObjectCommand({ Bucket: environment.bucket, Key: key }));
      const file = join(dir, basename(key));
      writeFileSync(
        file,
        await (object.Body as { transformToString(): Promise<string> }).transformToString(),
      );
      console.error(`Report: ${file} (s3://${environment.bucket}/${key})`);
    }
  });
}

/** What a command does once its execution has ended, while the local stack still runs. */
type AfterRun = (environment: LocalEnvironment, record: ExecutionRecord) => Promise<void>;

async function start(
  workflow: string,
  inputText: string | undefined,
  options: LocalEnvironmentOptions,
  afterRun?: AfterRun,
) {
  if (!workflows().includes(workflow)) {
    console.error(`Unknown workflow "${workflow}". Known workflows: ${workflows().join(', ')}.`);
    return 2;
  }
  let input: unknown = {};
  if (inputText !== undefined) {
    try {
      input = JSON.parse(inputText);
    } catch (error) {
      console.error(
        `--input is not valid JSON (${(error as Error).message}); give it as --input '{"database": "kennel_prod"}'.`,
      );
      return 2;
    }
  }

  // Ctrl-C aborts the execution as StopExecution would: its host commands are
  // cancelled and a restore is cleaned up (restore-cleanup), then what this run
  // started is stopped. A second Ctrl-C quits at once, leaving what is left. Under
  // `npm run`, one Ctrl-C arrives twice (from the terminal, and forwarded by npm):
  // a second within INTERRUPT_ECHO_MS is the same one.
  const stop = new AbortController();
  let firstAt = 0;
  const interrupted = () => {
    if (!stop.signal.aborted) {
      firstAt = Date.now();
      console.error(
        '\nAborting the execution: its host commands are cancelled and it is cleaned up (Ctrl-C again to quit now) …',
      );
      stop.abort();
    } else if (Date.now() - firstAt > INTERRUPT_ECHO_MS) {
      console.error(
        'Quitting now: what the execution left (a staging database, a stopped application) stays.',
      );
      process.exit(130);
    }
  };
  process.on('SIGINT', interrupted);
  try {
    return await startAndRun(workflow, input, options, stop.signal, afterRun);
  } finally {
    process.off('SIGINT', interrupted);
  }
}

async function startAndRun(
  workflow: string,
  input: unknown,
  options: LocalEnvironmentOptions,
  signal: AbortSignal,
  afterRun?: AfterRun,
): Promise<number> {
  console.error(`Starting local services (state in ${options.dataDir}) …`);
  const { environment, running } = await openLocalStack(options);
  try {
    if (signal.aborted) {
      console.error('Aborted before the execution started; nothing was run.');
      return 130;
    }
    if (running) console.error('Using the running local stack (npm run local -- up).');
    if (workflow === 'database-backup' && !environment.physical.ready) {
      const refusal = physicalKindsRefusal(environment.physical.lacking);
      const kind = (input as { kind?: unknown } | null)?.kind ?? 'full';
      if (typeof kind === 'string' && PHYSICAL_KINDS.has(kind)) {
        console.error(`The ${kind} backups are pgBackRest's; nothing was started.\n${refusal}`);
        return 2;
      }
      // The target goes without its pgbackrest settings: the full backup is the logical dump alone.
      console.error(`The full backup runs its logical dump only.\n${refusal}`);
      const targets = JSON.parse(environment.functionEnv.BACKUP_TARGETS ?? '[]') as Record<string, unknown>[];
      environment.functionEnv.BACKUP_TARGETS = JSON.stringify(targets.map(({ pgbackrest: _, ...t }) => t));
    }
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
          signal,
        },
        {
          // The whole output of each host command goes to the local S3, as Run Command's does to S3.
          host: localHost(environment.hostEnv, {}, createS3Client(parseConfig(environment.functionEnv))),
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
    for (const started of record.started)
      console.error(`Then ${started.workflow}: ${started.status}; history: ${started.historyFile}`);
    await afterRun?.(environment, record);
    return record.status === 'SUCCEEDED' ? 0 : record.status === 'ABORTED' ? 130 : 1;
  } finally {
    await environment.stop();
  }
}

process.exitCode = await main().catch((error: unknown) => {
  console.error(`local runner: ${(error as Error).message}`);
  return 1;
});
