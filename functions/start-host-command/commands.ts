import { BACKUP_HOST_COMMANDS } from '../../shared/backup/host-commands.ts';
import { PHYSICAL_HOST_COMMANDS } from '../../shared/backup/physical-host-commands.ts';
import { PHYSICAL_RESTORE_TEST_HOST_COMMANDS } from '../../shared/backup/physical-restore-test.ts';
import { PREPARE_HOST_COMMANDS } from '../../shared/host/prepare.ts';
import { hostCommandSet } from '../../shared/host/scripts.ts';
import { RESTORE_HOST_COMMANDS } from '../../shared/restore/host-commands.ts';
import { POINT_IN_TIME_HOST_COMMANDS } from '../../shared/restore/point-in-time.ts';
import { CHECK_HOST_COMMANDS } from '../../shared/watch/check.ts';
import { WATCH_HOST_COMMANDS } from '../../shared/watch/host-commands.ts';

/**
 * Every host command a workflow can start, by name: the one place that knows all
 * of them, since this function serves every workflow. The state machines' host
 * command steps name these.
 */
export const HOST_COMMANDS = {
  ...BACKUP_HOST_COMMANDS,
  ...RESTORE_HOST_COMMANDS,
  ...POINT_IN_TIME_HOST_COMMANDS,
  ...WATCH_HOST_COMMANDS,
  ...PREPARE_HOST_COMMANDS,
  ...PHYSICAL_RESTORE_TEST_HOST_COMMANDS,
  ...PHYSICAL_HOST_COMMANDS,
  ...CHECK_HOST_COMMANDS,
};

export type HostCommandName = keyof typeof HOST_COMMANDS;

/** The commands with the schema of their requests, told apart by `script`. */
export const HOST_COMMAND_SET = hostCommandSet(HOST_COMMANDS);
