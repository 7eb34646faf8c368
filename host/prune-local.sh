#!/bin/bash
# Removes the host's copies older than the retention table's local days from
# the run's backup directory, except the newest verified backup's. The ages are
# the files' own (written when the archive was made), as in the source document;
# the prune stage gives the days and the file to keep. Then removes what runs
# that ended without cleaning up left on this host (host_leftovers) once older
# than KB_LEFTOVER_SECONDS: no running execution owns one by then
# (shared/catalog/leftovers.ts). Each removal is named on its own line.
#
# Parameters: KB_LOCAL_DIR KB_KEEP_DAYS KB_KEEP_FILE (empty: none to keep)
#   KB_BACKUP_DIR KB_LEFTOVER_SECONDS KB_DATABASE (empty: no database is
#   looked at) KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE

if [[ ! -d $KB_LOCAL_DIR ]]; then
  echo "prune-local: $KB_LOCAL_DIR does not exist; nothing to remove"
else
  keep=()
  [[ -n $KB_KEEP_FILE ]] && keep=(! -name "$KB_KEEP_FILE")
  removed=$(find "$KB_LOCAL_DIR" -maxdepth 1 -type f -mmin +$((KB_KEEP_DAYS * 1440)) "${keep[@]}" -print -delete | wc -l)
  echo "prune-local: removed $removed file(s) older than $KB_KEEP_DAYS day(s) from $KB_LOCAL_DIR"
fi

# Captured first, so that a listing that fails (PostgreSQL unreachable) fails the prune, said, not passed over.
listing=$(host_leftovers "$KB_BACKUP_DIR" "$KB_DATABASE")
while read -r where name bytes age; do
  [[ -n $where ]] || continue
  ((age >= KB_LEFTOVER_SECONDS)) || continue
  case $where in
    file) rm -f -- "$name" ;;
    work) rm -rf -- "$name" ;;
    # FORCE: a leftover this old has no run of ours connected; a straggling session must not keep it.
    database) pg_sql "$KB_DATABASE" -v "name=$name" <<<'DROP DATABASE IF EXISTS :"name" WITH (FORCE);' ;;
  esac
  echo "prune-local: removed the leftover $where $name ($bytes bytes, $((age / 3600)) h old)"
done <<<"$listing"
