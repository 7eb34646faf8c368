#!/bin/bash
# Database backup (a logical dump), run on the DB host by SSM Run Command (or the local runner).
#   full:    pg_dump of every table, the log tables' rows left out (KB_EXCLUDE_TABLES)
#   monthly: pg_dump of every table, the log tables' rows included: the long-term copy
#   safety:  pg_dump of everything, taken by a restore before it replaces a database
# It ends by printing one result line of the facts only the host knows; the
# workflow's VerifyArchive stage reads the archive and writes its manifest:
#   KB-RESULT {"size": N, "sha256": "…", "startedAt": "…", "finishedAt": "…", "until": "…", "serverVersion": "…"}
#
# Parameters are prepended as shell assignments by shared/host/shell.ts:
#   KB_KIND KB_DATABASE KB_EXCLUDE_TABLES (pg_dump patterns, one a line, each naming
#   exactly one table: "schema"."name") KB_PG_MODE (host|docker)
#   KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_BUCKET KB_ARCHIVE_KEY KB_LOCAL_DIR
#   KB_LOCAL_PATH KB_S3_ENDPOINT_URL KB_COMPRESS
# Credentials come from the host's environment (PGHOST, PGUSER, PGPASSWORD or
# ~/.pgpass; AWS from the instance role), never from this text.
started_at=$(utc_now)
mkdir -p "$KB_LOCAL_DIR"
local_path=$KB_LOCAL_PATH
work=$(mktemp -d)
snapshot_pid=
cleanup() {
  local status=$?
  set +e # errexit would stop the clean-up at its first failing step
  if [[ -n $snapshot_pid ]]; then kill "$snapshot_pid" 2>/dev/null; fi
  if ((status != 0)); then
    rm -f "$local_path"
    if [[ -s $work/snapshot.err ]]; then sed 's/^/snapshot session: /' "$work/snapshot.err" >&2; fi
    echo "database-backup: failed with status $status; nothing was recorded in the catalog" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# One transaction holds a snapshot open and pg_dump reads it, so
# the archive holds the database as of one instant even while the application
# writes. The snapshot lives as long as this session stays open. Production is
# read once: the rows per table are counted from the archive by VerifyArchive.
# The session's stderr (its \warn answers and any error) goes to the pipe read
# below; its stdout is not wanted.
# shellcheck disable=SC2069
coproc SNAPSHOT { pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$KB_DATABASE" 2>&1 >/dev/null; }
# shellcheck disable=SC2153 # bash sets SNAPSHOT_PID for the coproc
snapshot_pid=$SNAPSHOT_PID
to_session=${SNAPSHOT[1]}
from_session=${SNAPSHOT[0]}

# psql buffers query output on a pipe but not \warn on stderr, so each request
# stores its result with \gset and answers with one "KB:" line on stderr; any
# other line is an error message from the session.
session() { # session SQL-AND-META-COMMANDS
  printf '%s\n' "$1" >&"$to_session"
  local line
  while IFS= read -r line <&"$from_session"; do
    if [[ $line == KB:* ]]; then
      printf '%s\n' "${line#KB:}"
      return 0
    fi
    printf '%s\n' "$line" >>"$work/snapshot.err"
  done
  echo "database-backup: the PostgreSQL session ended early; is the database \"$KB_DATABASE\" there and reachable?" >&2
  return 1
}

# `until`, when the dump's data is from, is the server's clock as the statement
# that takes the snapshot starts (a transaction's snapshot is taken by its first
# statement).
session "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot() AS snapshot, to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS until, current_setting('server_version_num') AS server_version, current_setting('server_encoding') AS server_encoding \\gset
\\warn KB::snapshot :until :server_version :server_encoding" >"$work/snapshot"
read -r snapshot until server_version server_encoding <"$work/snapshot"

exclude=()
# The log tables' definitions stay in a full dump; their rows are left out
# (their copies are the physical backups and WAL, and the monthly dump).
if [[ -n $KB_EXCLUDE_TABLES ]]; then
  mapfile -t patterns <<<"$KB_EXCLUDE_TABLES"
  for pattern in "${patterns[@]}"; do exclude+=("--exclude-table-data=$pattern"); done
fi
# The dump is written in UTF-8 whatever the database's encoding, as VerifyArchive
# reads the tables' names in it (a restore converts back). SQL_ASCII has no
# conversion to UTF-8, so its bytes are dumped as they are.
encoding=()
if [[ $server_encoding != SQL_ASCII ]]; then encoding=(--encoding=UTF8); fi
# Dump, compress, keep the local copy and stream to S3 in one pass: no temporary
# file beyond the local copy the source document keeps anyway.
pg pg_dump --no-password --format=plain --snapshot="$snapshot" "${encoding[@]}" "${exclude[@]}" -d "$KB_DATABASE" 2>"$work/dump.err" \
  | $KB_COMPRESS \
  | tee "$local_path" \
  | s3_put "$KB_ARCHIVE_KEY" application/octet-stream \
  || { cat "$work/dump.err" >&2; exit 1; }

printf 'COMMIT;\n' >&"$to_session"
exec {to_session}>&-
wait "$snapshot_pid" || true
snapshot_pid=

size=$(stat -c %s "$local_path")
sha256=$(sha256sum "$local_path" | cut -d' ' -f1)
finished_at=$(utc_now)

echo "database-backup: $KB_KIND of $KB_DATABASE -> s3://$KB_BUCKET/$KB_ARCHIVE_KEY ($size bytes, sha256 $sha256)"
# Every value passed a strict pattern or came from date, stat, sha256sum or PostgreSQL: nothing to escape.
printf 'KB-RESULT {"size": %s, "sha256": "%s", "startedAt": "%s", "finishedAt": "%s", "until": "%s", "serverVersion": "%s"}\n' \
  "$size" "$sha256" "$started_at" "$finished_at" "$until" "$server_version"
