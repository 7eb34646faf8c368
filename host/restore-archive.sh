#!/bin/bash
# Restores a dump (a full backup or a safety dump) into a new database, on the
# DB host: the restore test's scratch database, or a restore's staging database.
# The dump is checked against the sha256 that verification recorded before it is
# used; a dump that does not apply completely leaves no database behind.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_INTO KB_BUCKET
#   KB_S3_ENDPOINT_URL
#   KB_ARCHIVES     the dump, one line: KEY SHA256 LOCAL-PATH DECOMPRESS-COMMAND
#   KB_ABSENT       a database that must not exist (a restore's final name), or empty

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

read -r key sha256 local_path decompress <<<"$KB_ARCHIVES"
if [[ -z $decompress || $KB_ARCHIVES == *$'\n'* ]]; then
  echo "restore-archive: expected exactly one dump to restore; start the restore again from its workflow" >&2
  exit 2
fi
archive=$(intact_copy "$local_path" "$sha256" "$key" "$work")

pg createdb "$KB_INTO"
created=1
# Not in one transaction: it would hold a lock on every table and index it
# creates until its end, and the lock table (max_locks_per_transaction, 64 by
# default, times the connections) runs out at a few thousand tables. The
# database is new, so a dump that does not apply completely is dropped whole
# instead: psql stops at the first error and the EXIT trap drops the database.
# For the same reason no statement waits for its commit to reach the disk.
$decompress <"$archive" \
  | pg psql -X -q -v ON_ERROR_STOP=1 -c 'SET synchronous_commit = off' -f - -d "$KB_INTO" >/dev/null
echo "restore-archive: restored $(basename "$archive") into $KB_INTO"
