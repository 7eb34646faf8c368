#!/bin/bash
# Removes the host's copies older than the retention table's local days from
# the run's backup directory, except the newest verified backup's. The ages are
# the files' own (written when the archive was made), as in the source document;
# the prune stage gives the days and the file to keep.
#
# Parameters: KB_LOCAL_DIR KB_KEEP_DAYS KB_KEEP_FILE (empty: none to keep)

if [[ ! -d $KB_LOCAL_DIR ]]; then
  echo "prune-local: $KB_LOCAL_DIR does not exist; nothing to remove"
  exit 0
fi
keep=()
[[ -n $KB_KEEP_FILE ]] && keep=(! -name "$KB_KEEP_FILE")
removed=$(find "$KB_LOCAL_DIR" -maxdepth 1 -type f -mmin +$((KB_KEEP_DAYS * 1440)) "${keep[@]}" -print -delete | wc -l)
echo "prune-local: removed $removed file(s) older than $KB_KEEP_DAYS day(s) from $KB_LOCAL_DIR"
