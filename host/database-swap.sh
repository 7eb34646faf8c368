#!/bin/bash
# Puts a checked restore in place, on the DB host: the staging database is
# renamed to its final name. When it replaces a database, that one is renamed
# aside in the same transaction, so either both renames happen or neither; the
# replaced database is kept, not dropped.
#
# Replacing a database, it first lists the replaced database's tables that the
# restore lacks (created after the backup or the target time): their rows stay
# only in the replaced database and the safety dump, which the summary says.
# It prints, then (the application stopped, so the counts are final):
#   KB-RESULT {"onlyInReplaced": [[SCHEMA, NAME, ROWS], ...], "onlyInReplacedCount", "onlyInReplacedRows"}
# (at most ONLY_LISTED tables listed; the count and rows are of them all).
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

# Enough to name them on the result line, which stays small at 10,000 tables.
ONLY_LISTED=50
err=$(mktemp)
only=$(mktemp)
trap 'rm -f "$err" "$only"' EXIT
tables_sql="SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
# The staging database's tables, as CSV (any name survives it), into a temporary
# table of the replaced database's session, where the missing ones are counted.
{
  echo 'CREATE TEMP TABLE kb_restored (schema text, name text);'
  echo 'COPY kb_restored FROM STDIN WITH (FORMAT csv);'
  pg_sql "$KB_STAGING" <<<"COPY ($tables_sql) TO STDOUT WITH (FORMAT csv)"
  echo '\.'
  cat <<SQL
SELECT format('SELECT json_build_array(%L::text, %L::text, count(*)) FROM ONLY %I.%I', t.nspname, t.relname, t.nspname, t.relname)
FROM ($tables_sql) t
WHERE NOT EXISTS (SELECT FROM kb_restored r WHERE r.schema = t.nspname AND r.name = t.relname)
ORDER BY t.nspname COLLATE "C", t.relname COLLATE "C" \gexec
SQL
} | pg_sql "$KB_TARGET_DATABASE" >"$only" || {
  echo "database-swap: could not list the tables of $KB_TARGET_DATABASE that $KB_STAGING lacks; nothing was renamed" >&2
  exit 1
}
listed=() count=0 rows=0
while IFS= read -r line; do
  [[ $line =~ ,[[:space:]]*([0-9]+)\]$ ]] || { echo "database-swap: unexpected count line" >&2; exit 1; }
  count=$((count + 1))
  rows=$((rows + BASH_REMATCH[1]))
  if ((${#listed[@]} < ONLY_LISTED)); then listed+=("$line"); fi
done <"$only"
if ((count > 0)); then
  echo "database-swap: $count table(s) of $KB_TARGET_DATABASE ($rows rows) are not in the restore; they stay in $KB_REPLACED"
fi

# The application is stopped, but a rename needs the database free of every
# session (an admin's psql, a cron job): they are ended, and a session that
# reconnects in between makes the transaction fail, so that case is tried again.
for attempt in 1 2 3 4 5; do
  if pg_sql postgres -v staging="$KB_STAGING" -v final="$KB_TARGET_DATABASE" -v replaced="$KB_REPLACED" 2>"$err" <<'SQL'; then
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :'final' AND pid <> pg_backend_pid() \g /dev/null
BEGIN;
ALTER DATABASE :"final" RENAME TO :"replaced";
ALTER DATABASE :"staging" RENAME TO :"final";
COMMIT;
SQL
    echo "database-swap: $KB_STAGING is now $KB_TARGET_DATABASE; the replaced database is kept as $KB_REPLACED"
    (
      IFS=,
      printf 'KB-RESULT {"onlyInReplaced": [%s], "onlyInReplacedCount": %s, "onlyInReplacedRows": %s}\n' "${listed[*]}" "$count" "$rows"
    )
    exit 0
  fi
  cat "$err" >&2
  grep -q 'is being accessed by other users' "$err" || break
  echo "database-swap: attempt $attempt found $KB_TARGET_DATABASE in use; trying again" >&2
  sleep "$attempt"
done
echo "database-swap: $KB_TARGET_DATABASE could not be renamed; it is unchanged" >&2
exit 1
