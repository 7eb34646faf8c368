'use strict';

// The resources and principals of the backup bucket's create-only statements,
// and of the grants on the records of the archives' creation
// (serverless.yml BackupBucketPolicy), from the one key layout in
// shared/catalog/keys.ts.
const {
  ARCHIVE_RECORD_PREFIX,
  BACKUP_PREFIXES,
  FILE_KINDS,
  KIND_PREFIX,
  MANIFEST_SUFFIX,
} = require('../shared/catalog/keys.ts');

/** Objects of the backup bucket whose keys match `pattern` (`*` spans `/` in an S3 ARN). */
const objects = (pattern) => ({ 'Fn::Sub': `\${BackupBucket.Arn}/${pattern}` });
const roleOf = (logicalId) => ({ 'Fn::GetAtt': [`${logicalId}IamRoleLambdaExecution`, 'Arn'] });

module.exports = {
  /** Archives and their manifests: every object under a backup prefix. */
  backupObjects: () => BACKUP_PREFIXES.map((prefix) => objects(`${prefix}*`)),

  /** Every manifest, wherever it lies. */
  manifestObjects: () => objects(`*${MANIFEST_SUFFIX}`),

  /** The records of the archives' creation (shared/catalog/archive-record.ts). */
  archiveRecordObjects: () => objects(`${ARCHIVE_RECORD_PREFIX}*`),

  /** Every archive, and the record of its creation: what VerifyArchive reads by version and locks. */
  archivesAndRecords: () => [
    ...BACKUP_PREFIXES.map((prefix) => objects(`${prefix}*`)),
    objects(`${ARCHIVE_RECORD_PREFIX}*`),
  ],

  /** The records of the files kinds' tarballs: what planFilesRestore checks a manifest against. */
  fileRecordObjects: () =>
    FILE_KINDS.map((kind) => objects(`${ARCHIVE_RECORD_PREFIX}${KIND_PREFIX[kind]}/*`)),

  /**
   * The roles that write manifests: verifyArchive (the manifest and its
   * verdict) and restoreTest (the restore test's result).
   */
  manifestWriters: () => [roleOf('VerifyArchive'), roleOf('RestoreTest')],

  /** The role that records an archive's creation: verifyArchive. */
  archiveRecordWriters: () => [roleOf('VerifyArchive')],
};
