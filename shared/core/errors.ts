import * as z from './schema.ts';

/**
 * Every error a stage may throw. Step Functions matches `Retry` and `Catch` on the
 * error's `name`, so each class sets one; transient ones are named in the state
 * machines' `Retry` lists, every other one is caught, alerted and fails the run.
 * Messages say what was wrong and what to do about it.
 */

abstract class KennelBackupError extends Error {
  /**
   * Spelled out, never `new.target.name`: the bundles are minified, so a class's
   * own name is a letter or two in AWS, and no Retry or Catch would match it.
   */
  abstract override readonly name: string;
}

/** Bad execution input or configuration: fix the input and start a new execution. */
export class InvalidInputError extends KennelBackupError {
  override readonly name = 'InvalidInputError';
}

/** The environment of a function is incomplete or malformed: fix the deployment. */
export class ConfigError extends KennelBackupError {
  override readonly name = 'ConfigError';
}

/** A target, backup or archive named in the input does not exist. */
export class NotFoundError extends KennelBackupError {
  override readonly name = 'NotFoundError';
}

/**
 * An object of the catalog (a manifest, a physical backup's or a recovery's
 * record) that is not valid JSON or not of its schema. Every listing of the
 * catalog passes over it, naming its key in the log; the daily verification
 * reports it. Terminal: only a person can repair or delete it.
 */
export class BadManifestError extends KennelBackupError {
  override readonly name = 'BadManifestError';
}

/**
 * Another run of the same kind and target (or a restore into the same
 * database) holds the run lock and is still running: this one changed nothing.
 * Terminal: start it again once the other has ended.
 */
export class RunLockHeldError extends KennelBackupError {
  override readonly name = 'RunLockHeldError';
}

/** The host command ran and failed; the message carries the tail of its stderr. */
export class HostCommandFailedError extends KennelBackupError {
  override readonly name = 'HostCommandFailedError';
}

/** The host command did not finish before its deadline. */
export class HostCommandTimedOutError extends KennelBackupError {
  override readonly name = 'HostCommandTimedOutError';
}

/** The archive in S3 is not what its manifest says it is. */
export class ArchiveCorruptError extends KennelBackupError {
  override readonly name = 'ArchiveCorruptError';
}

/**
 * An archive, or its manifest, is not what was recorded when the archive was
 * created (shared/catalog/archive-record.ts): its current version is not the
 * one its backup wrote, or its manifest's sha256 or size was rewritten. The
 * message names the object and the version to restore from. Terminal: someone
 * replaced a backup, which only a person can look into.
 */
export class TamperedArchiveError extends KennelBackupError {
  override readonly name = 'TamperedArchiveError';
}

/** pgBackRest's verify found files of its repository (backup files, WAL segments) missing or not as written. */
export class RepositoryCorruptError extends KennelBackupError {
  override readonly name = 'RepositoryCorruptError';
}

/** The restored scratch database does not hold what the manifest recorded. */
export class RestoreMismatchError extends KennelBackupError {
  override readonly name = 'RestoreMismatchError';
}

/** A stopped or failed restore's clean-up left something to do by hand: the application stopped, a staging database. */
export class CleanUpIncompleteError extends KennelBackupError {
  override readonly name = 'CleanUpIncompleteError';
}

/** A physical backup's restore test failed or could not run: the backup is the base of nothing. */
export class RestoreTestFailedError extends KennelBackupError {
  override readonly name = 'RestoreTestFailedError';
}

/**
 * The WAL archive cannot replay from the oldest kept backup to now: a segment or
 * a timeline's history is missing from the repository, or what the host reported
 * of it does not add up. The message names the first missing segment and when
 * its changes were written.
 */
export class WalContinuityError extends KennelBackupError {
  override readonly name = 'WalContinuityError';
}

/** A dependency (S3, SSM, PostgreSQL) did not answer; retrying later is safe. */
export class TransientError extends KennelBackupError {
  override readonly name = 'TransientError';
}

/** The hourly monitoring found a problem (a missing daily full, a full disk); the message lists them. */
export class MonitoringFailedError extends KennelBackupError {
  override readonly name = 'MonitoringFailedError';
}

/** A restore drill could not restore a backup, or a check failed; the message lists them. */
export class DrillFailedError extends KennelBackupError {
  override readonly name = 'DrillFailedError';
}

/** The daily verification found backups missing, stale or bad; the message lists every one. */
export class VerificationFailedError extends KennelBackupError {
  override readonly name = 'VerificationFailedError';
}

/** prepare-host could not prepare a target, or pgBackRest's stanza-create or check failed there; the message says what was done and what failed. */
export class PrepareHostFailedError extends KennelBackupError {
  override readonly name = 'PrepareHostFailedError';
}

/** The preflight (the check workflow) found something a run needs missing; the message has every line and each fix. */
export class CheckFailedError extends KennelBackupError {
  override readonly name = 'CheckFailedError';
}

const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * Wraps an AWS SDK or socket failure: network errors and throttling become a
 * TransientError (retried by the workflow), anything else is passed on as it is.
 */
export function classifyAwsError(error: unknown, what: string): Error {
  if (!(error instanceof Error)) return new Error(`${what}: ${String(error)}`);
  const code = (error as { code?: string }).code ?? error.name;
  const meta = (error as { $metadata?: { httpStatusCode?: number } }).$metadata;
  const status = meta?.httpStatusCode ?? 0;
  const retryable = (error as { $retryable?: unknown }).$retryable !== undefined;
  if (TRANSIENT_NETWORK_CODES.has(code) || retryable || status >= 500 || status === 429) {
    return new TransientError(
      `${what} failed (${code}${status ? ` ${status}` : ''}); the service may be unreachable. The workflow retries; if it keeps failing, check network access and the service's health.`,
      { cause: error },
    );
  }
  return error;
}

/**
 * The message of a caught error as Step Functions records it: a Lambda error's
 * Cause is JSON ({ errorType, errorMessage, trace }); a runtime error's is text.
 */
export function causeMessage(cause: unknown): string {
  if (typeof cause !== 'string') return JSON.stringify(cause ?? '');
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    if (typeof parsed.errorMessage === 'string') return parsed.errorMessage;
  } catch {
    // Not JSON: a Step Functions runtime error or a local error message.
  }
  return cause;
}

/**
 * What a workflow's Catch records of an error: its name and its cause. The
 * schemas' calls are pure, so that a bundle that reads no caught error drops them.
 */
export const caughtErrorSchema = /* @__PURE__ */ z.object({
  Error: /* @__PURE__ */ z.string(),
  Cause: /* @__PURE__ */ z.unknown(),
});

export type CaughtError = z.infer<typeof caughtErrorSchema>;

/** Where the workflows' Catch write a failed stage's error: `failed.<StateName>`, so its key names the state. */
export const failedStatesSchema = /* @__PURE__ */ z.record(/* @__PURE__ */ z.string(), caughtErrorSchema);

/**
 * The one way to read which state failed: the first entry of `failed` (a
 * workflow, or a Map iteration, stops at its first failed stage).
 */
export function firstFailure(
  failed: Readonly<Record<string, CaughtError>> | undefined,
): (CaughtError & { state: string }) | undefined {
  const [state, error] = Object.entries(failed ?? {})[0] ?? [];
  return state !== undefined && error !== undefined ? { state, ...error } : undefined;
}
