#!/bin/bash
# Removes expired local copies from the host's backup directory. The prune stage
# decides which (shared/retention.ts); this only deletes the named files, and
# only inside the directory.
#
# Parameters: KB_LOCAL_DIR KB_FILES (space-separated plain file names)

removed=0
for name in $KB_FILES; do
  if [[ $name == */* || $name == .* ]]; then
    echo "prune-local: refusing to remove '$name': not a plain file name" >&2
    exit 1
  fi
  if [[ -f $KB_LOCAL_DIR/$name ]]; then
    rm -f -- "$KB_LOCAL_DIR/$name"
    removed=$((removed + 1))
  fi
done
echo "prune-local: removed $removed file(s) from $KB_LOCAL_DIR"
