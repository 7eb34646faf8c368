#!/bin/bash
# Restores archives into a new database, on the DB host: the restore test's
# scratch database, or a restore's staging database. The first archive is a
# dump (full or safety); the others are incremental and log archives, applied in
# order, each in its own transaction. Every archive is checked against the
# sha256 that verification recorded before it is used.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_INTO KB_BUCKET
#   KB_S3_ENDPOINT_URL
#   KB_ARCHIVES     one line per archive: KEY SHA256 LOCAL-PATH DECOMPRESS-COMMAND
#   KB_ABSENT       a database that must not exist (a restore's final name), or empty
#   KB_LOG_TABLES   tables whose rows created after KB_TRIM_AFTER are removed at the end
#   KB_TRIM_AFTER   the point in time recovered to, or empty

work=$(mktemp -d)
created=
cleanup() {
  local status=$?
  set +e
  if ((status != 0)) && [[ -n $created ]]; then
    pg dropdb --if-exists --force "$KB_INTO"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

exists() { # exists DATABASE
  [[ -n $(echo "SELECT 1 FROM pg_database WHERE datname = :'name';" | pg_sql postgres -v name="$1") ]]
}
for name in "$KB_INTO" $KB_ABSENT; do
  if exists "$name"; then
    echo "restore-archive: the database $name already exists; a restore never writes into an existing database. Drop it, or choose another name." >&2
    exit 1
  fi
done

# Every archive is fetched and checked before the first one is applied.
archives=()
commands=()
while read -r key sha256 local_path decompress; do
  [[ -n $key ]] || continue
  archives+=("$(intact_copy "$local_path" "$sha256" "$key" "$work")")
  commands+=("$decompress")
done <<<"$KB_ARCHIVES"

pg createdb "$KB_INTO"
created=1
for i in "${!archives[@]}"; do
  # One transaction per archive: an archive that does not apply completely leaves nothing behind.
  ${commands[$i]} <"${archives[$i]}" \
    | pg psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$KB_INTO" >/dev/null
  echo "restore-archive: applied $(basename "${archives[$i]}")"
done

if [[ -n $KB_TRIM_AFTER ]]; then
  # Log archives hold whole windows; the rows after the target time go.
  pg_sql "$KB_INTO" -v tables="$KB_LOG_TABLES" -v after="$KB_TRIM_AFTER" <<'SQL'
SELECT format('DELETE FROM %I WHERE created_at > %L', t, :'after')
  FROM unnest(string_to_array(:'tables', ' ')) AS t
 WHERE to_regclass(quote_ident(t)) IS NOT NULL
\gexec
SQL
fi

echo "restore-archive: restored ${#archives[@]} archive(s) into $KB_INTO"
