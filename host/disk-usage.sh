#!/bin/bash
# Measures, on the host, how full the filesystem holding the backup directory is,
# and how much the backups take. Prints one result line for the workflow:
# KB-RESULT {"usedPercent": N, "sizeBytes": N, "availableBytes": N, "backupDirBytes": N}.
#
# Parameters: KB_BACKUP_DIR

if [[ ! -d $KB_BACKUP_DIR ]]; then
  echo "disk-usage: the backup directory $KB_BACKUP_DIR does not exist on this host" >&2
  exit 1
fi
# POSIX output, sizes in bytes: Filesystem, size, used, available, capacity, mount.
read -r _ size used available _ < <(df -P -B1 "$KB_BACKUP_DIR" | tail -n 1)
# Used over used + available, rounded up, as df's own capacity column (root's reserve excluded).
percent=$(((used * 100 + used + available - 1) / (used + available)))
backups=$(du -s -B1 "$KB_BACKUP_DIR" | cut -f1)
echo "disk-usage: $KB_BACKUP_DIR holds $backups bytes; its filesystem is $percent% full ($available bytes free)"
printf 'KB-RESULT {"usedPercent": %s, "sizeBytes": %s, "availableBytes": %s, "backupDirBytes": %s}\n' \
  "$percent" "$size" "$available" "$backups"
