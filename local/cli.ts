import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { auditReportInputSchema } from '../shared/audit/gather.ts';
import { Catalog } from '../shared/catalog/catalog.ts';
import { createS3Client } from '../shared/core/clients.ts';
import { parseConfig } from '../shared/core/config.ts';
import { causeMessage } from '../shared/core/errors.ts';
import { parseInput } from '../shared/core/input.ts';
import type { CheckReport } from '../shared/watch/check.ts';
import { columns, formatInfo, humanBytes, readInfo } from '../shared/watch/info.ts';
import { type LocalEnvironment, type LocalEnvironmentOptions, physicalKindsRefusal } from './environment.ts';
import { localHost } from './host.ts';
import {
  checkExecutionName,
  type ExecutionRecord,
  listExecutions,
  PROJECT_ROOT,
  runWorkflow,
  workflows,
} from './runner.ts';
import { downLocalStack, openLocalStack, resetLocalStack, runningStack, upLocalStack } from './stack.ts';

const USAGE = `Usage: npm run -s local -- <command>   (-s: npm's own banner stays off stdout)

  up                                   start the local stack and leave it running; its last
                                       line on stdout is one JSON object: databaseUrl, pgData,
                                       s3Endpoint, bucket, ...
  down                                 stop it
  reset                                stop it and delete the local state
  start <workflow> [--input '<json>'] [--name <name>]
                                       run a workflow (built by statemachines/) in-process with
                                       the real handlers, on the running stack or on one started
                                       and stopped around the run; stdout gets the execution's
                                       output (JSON) alone, progress and logs go to stderr
  executions [--json]                  the ended executions, newest first: workflow, name,
                                       status, start, duration (histories in executions/)
  info [--json]                        every backup of every kind: time, size, storage class,
                                       state; the WAL's recoverable range and gaps
  check [--json] [--input '<json>']    the preflight (the check workflow): a line per need, OK or
                                       the fix; exits 1 when one is not OK
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
    progress: (line) => console.error(line),
  };
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      input: { type: 'string' },
      name: { type: 'string' },
      json: { type: 'boolean' },
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
      if (workflow) return start(workflow, values.input, values.name, options);
      break;
    case 'executions':
      return executions(options, values.json === true);
    case 'info':
      return info(options, values.json === true);
    case 'check':
      // The check workflow; its lines (or, with --json, the execution's output) on stdout.
      return start('check', values.input, values.name, options, values.json ? printOutput : printCheck);
    case 'report':
      return report(values.month, values.budget, values.name, options);
  }
  console.error(USAGE);
  return 2;
}

/** The local executions' histories as the console lists executions: newest first. */
function executions(options: LocalEnvironmentOptions, json: boolean): number {
  const list = listExecutions(join(options.dataDir, 'executions'));
  if (json) {
    console.log(JSON.stringify(list, null, 2));
    return 0;
  }
  if (list.length === 0) {
    console.error(`No execution has ended in ${join(options.dataDir, 'executions')} yet.`);
    return 0;
  }
  const rows = [
    ['WORKFLOW', 'NAME', 'STATUS', 'STARTED', 'DURATION'],
    ...list.map((e) => [e.workflow, e.name, e.status, e.startDate, `${e.durationSeconds} s`]),
  ];
  console.log(columns(rows).join('\n'));
  return 0;
}

/** The catalog of the local bucket, as `npx kennel-backup info` shows a deployed stage's. */
async function info(options: LocalEnvironmentOptions, json: boolean): Promise<number> {
  return withStack(options, async (environment) => {
    const config = parseConfig(environment.functionEnv);
    const s3 = createS3Client(config);
    const read = await readInfo(config, new Catalog(s3, config.BACKUP_BUCKET), s3);
    console.log(json ? JSON.stringify(read, null, 2) : formatInfo(read));
    return 0;
  });
}

/** Says on stderr which stack a command is about to use: the running one, or one it starts (which takes a while). */
function announceStack(dataDir: string): void {
  console.error(
    runningStack(dataDir)
      ? `Using the running local stack (npm run local -- up; state in ${dataDir}).`
      : `Starting local services (state in ${dataDir}) …`,
  );
}

/** Runs `use` on the running stack, or on one started for it and stopped after. */
async function withStack(
  options: LocalEnvironmentOptions,
  use: (environment: LocalEnvironment) => Promise<number>,
): Promise<number> {
  announceStack(options.dataDir);
  const { environment } = await openLocalStack(options);
  try {
    return await use(environment);
  } finally {
    await environment.stop();
  }
}

/** What stdout gets of an ended execution. */
type Printer = (record: ExecutionRecord) => void;

/** The execution's output as JSON, or its error and cause: what `start` prints. */
const printOutput: Printer = (record) =>
  console.log(
    JSON.stringify(
      record.status === 'SUCCEEDED' ? record.output : { error: record.error, cause: record.cause },
      null,
      2,
    ),
  );

/** The check's lines: from its report, or from the cause it failed with (which lists them all). */
const printCheck: Printer = (record) => {
  if (record.status === 'SUCCEEDED') console.log((record.output as CheckReport).summary);
  else console.log(`${record.error}: ${causeMessage(record.cause ?? '')}`);
};

/**
 * `report`: the audit-report workflow with `{"month": …, "budgetUsd": …}`, as an
 * operator starts it from the console; its three files are then copied from the
 * local bucket to <KENNEL_BACKUP_DIR>/reports/ to be opened.
 */
async function report(
  month: string | undefined,
  budget: string | undefined,
  name: string | undefined,
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
  return start(
    'audit-report',
    JSON.stringify(input),
    name,
    options,
    printOutput,
    async (environment, record) => {
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
    },
  );
}

/** What a command does once its execution has ended, while the local stack still runs. */
type AfterRun = (environment: LocalEnvironment, record: ExecutionRecord) => Promise<void>;

async function start(
  workflow: string,
  inputText: string | undefined,
  name: string | undefined,
  options: LocalEnvironmentOptions,
  print: Printer = printOutput,
  afterRun?: AfterRun,
) {
  if (!workflows().includes(workflow)) {
    console.error(`Unknown workflow "${workflow}". Known workflows: ${workflows().join(', ')}.`);
    return 2;
  }
  if (name !== undefined) {
    try {
      checkExecutionName(join(options.dataDir, 'executions'), workflow, name);
    } catch (error) {
      console.error(`${(error as Error).message} Nothing was started.`);
      return 2;
    }
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
    // Step Functions hands the input to the first state as `$`: a workflow reads its
    // fields from an object, and `null`, a number or a list fails deep in the runner.
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      console.error(
        `--input must be a JSON object, not ${input === null ? 'null' : Array.isArray(input) ? 'a list' : `a ${typeof input}`}; give it as an object of the workflow's fields (the README's console inputs show each workflow's, e.g. --input '{"database": "kennel_prod"}'), or leave it out for a workflow whose fields all have defaults (the backups, check). Nothing was started.`,
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
    return await startAndRun(workflow, input, name, options, stop.signal, print, afterRun);
  } finally {
    process.off('SIGINT', interrupted);
  }
}

async function startAndRun(
  workflow: string,
  input: unknown,
  name: string | undefined,
  options: LocalEnvironmentOptions,
  signal: AbortSignal,
  print: Printer,
  afterRun?: AfterRun,
): Promise<number> {
  announceStack(options.dataDir);
  const { environment } = await openLocalStack(options);
  try {
    if (signal.aborted) {
      console.error('Aborted before the execution started; nothing was run.');
      return 130;
    }
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
    const watching = watchArchivesWritten(environment.paths.backupDir, (line) => console.error(line));
    try {
      record = await runWorkflow(
        {
          workflow,
          input,
          ...(name === undefined ? {} : { executionName: name }),
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
      clearInterval(watching);
      process.stdout.write = stdoutWrite;
    }
    print(record);
    console.error(`${record.status}; history: ${record.historyFile}`);
    for (const started of record.started)
      console.error(`Then ${started.workflow}: ${started.status}; history: ${started.historyFile}`);
    await afterRun?.(environment, record);
    return record.status === 'SUCCEEDED' ? 0 : record.status === 'ABORTED' ? 130 : 1;
  } finally {
    await environment.stop();
  }
}

/** How often a long run says how far its archives have got. */
const PROGRESS_EVERY_MS = 10_000;

/**
 * Progress of the archives a run is writing: every PROGRESS_EVERY_MS, one line
 * per `*.partial` file in the host's backup directory that grew (database-backup.sh
 * and files-backup.sh write there, then rename it), with its bytes so far.
 */
function watchArchivesWritten(backupDir: string, print: (line: string) => void): NodeJS.Timeout {
  const seen = new Map<string, number>();
  const timer = setInterval(() => {
    let files: string[];
    try {
      files = readdirSync(backupDir, { recursive: true, encoding: 'utf8' }).filter((f) =>
        f.endsWith('.partial'),
      );
    } catch {
      return; // not made yet
    }
    for (const file of files) {
      let bytes: number;
      try {
        bytes = statSync(join(backupDir, file)).size;
      } catch {
        continue; // renamed since the listing: done
      }
      if (bytes === seen.get(file)) continue;
      seen.set(file, bytes);
      print(
        `  … ${relative(backupDir, join(backupDir, file)).replace(/\.partial$/, '')}: ${humanBytes(bytes)} written`,
      );
    }
  }, PROGRESS_EVERY_MS);
  timer.unref();
  return timer;
}

process.exitCode = await main().catch((error: unknown) => {
  console.error(`local runner: ${(error as Error).message}`);
  return 1;
});
