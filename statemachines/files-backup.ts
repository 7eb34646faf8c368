import { backupWorkflow } from './backup-runs.ts';
import { at, type Definition, notify } from './steps.ts';

/** The state whose request PlanFilesBackup's errors name. */
export const FILES_BACKUP_STATE = { plan: 'PlanFilesBackup' } as const;

/** Configuration, application or static files of every planned target. */
export function filesBackup(): Definition {
  return backupWorkflow({
    workflow: 'files-backup',
    comment:
      'Files backup of the Kennel Management System (configuration, application or static files, by input): tar, upload, verify, prune; missing paths are warned about and every failure is alerted.',
    plan: {
      name: FILES_BACKUP_STATE.plan,
      fn: 'planFilesBackup',
      receiveComment:
        "Wraps whatever input was given, so that a malformed one still reaches PlanBackup's error and the alert.",
      comment:
        "Validates the input (kind, target, paths) and computes each target's run id, S3 keys and paths.",
    },
    runs: {
      comment:
        "Archives the kind's paths on every planned target, two at a time; each iteration catches its own failure.",
      archive: {
        noun: 'Archive',
        script: 'files-backup',
        comment:
          'Sends the files script: tar of the paths (relative to /), compressed, streamed to S3 with a local copy; its result line reports size, sha256, entries and any missing path.',
        resultPath: at('archive'),
      },
      verifyComment:
        'Streams the tarball from S3: it must decompress and list completely, with the size, sha256 and number of entries the host reported; writes the manifest, verified or failed.',
      afterVerify: 'PathsMissing',
      states: {
        PathsMissing: {
          Type: 'Choice',
          Comment: 'A path that was not on the host is not silently skipped: it is named in a warning.',
          Choices: [{ Variable: '$.verification.missing[0]', IsPresent: true, Next: 'NotifyMissingPaths' }],
          Default: 'PruneBackups',
        },
        ...notify('NotifyMissingPaths', {
          workflow: 'files-backup',
          comment: 'Warns that paths were missing; the backup of the others goes on.',
          message: {
            'warning.$':
              "States.Format('The {} backup of {} is missing {}: these paths were not on the host and are not in the archive. Restore or remove them, or fix the path list.', $.plan.kind, $.plan.target, States.JsonToString($.verification.missing))",
          },
          resultPath: at('warningAlert'),
          next: 'PruneBackups',
          ifNotSent: { next: 'PruneBackups', resultPath: at('warningAlertFailure') },
        }),
      },
    },
  });
}
