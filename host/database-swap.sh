#!/bin/bash
# Puts a checked restore in place, on the DB host: the staging database is
# renamed to its final name. When it replaces a database, that one is renamed
# aside in the same transaction, so either both renames happen or neither; the
# replaced database is kept, not dropped.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_STAGING
#   KB_TARGET_DATABASE KB_REPLACED (empty: the final name must be free)

if [[ -z $KB_REPLACED ]]; then
  pg_sql postgres -v staging="$KB_STAGING" -v final="$KB_TARGET_DATABASE" <<'SQL'
ALTER DATABASE :"staging" RENAME TO :"final";
SQL
  echo "database-swap: $KB_STAGING is now $KB_TARGET_DATABASE"
  exit 0
fi

# The application is stopped, but a rename needs the database free of every
# session (an admin's psql, a cron job): they are ended, and a session that
# reconnects in between makes the transaction fail, so that case is tried again.
err=$(mktemp)
trap 'rm -f "$err"' EXIT
for attempt in 1 2 3 4 5; do
  if pg_sql postgres -v staging="$KB_STAGING" -v final="$KB_TARGET_DATABASE" -v replaced="$KB_REPLACED" 2>"$err" <<'SQL'; then
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :'final' AND pid <> pg_backend_pid() \g /dev/null
BEGIN;
ALTER DATABASE :"final" RENAME TO :"replaced";
ALTER DATABASE :"staging" RENAME TO :"final";
COMMIT;
SQL
    echo "database-swap: $KB_STAGING is now $KB_TARGET_DATABASE; the replaced database is kept as $KB_REPLACED"
    exit 0
  fi
  cat "$err" >&2
  grep -q 'is being accessed by other users' "$err" || break
  echo "database-swap: attempt $attempt found $KB_TARGET_DATABASE in use; trying again" >&2
  sleep "$attempt"
done
echo "database-swap: $KB_TARGET_DATABASE could not be renamed; it is unchanged" >&2
exit 1
