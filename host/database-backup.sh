#!/bin/bash
# Full database backup, run on the DB host by SSM Run Command (or the local runner).
#
# Parameters are prepended as shell assignments by shared/shell.ts:
#   KB_DATABASE KB_EXCLUDE_TABLES (space-separated) KB_PG_MODE (host|docker)
#   KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_BUCKET KB_ARCHIVE_KEY KB_MANIFEST_KEY
#   KB_LOCAL_DIR KB_FILE_NAME KB_S3_ENDPOINT_URL KB_COMPRESS KB_COMPRESSION
#   KB_TARGET KB_RUN_ID KB_EXECUTION_ID
# Credentials come from the host's environment (PGHOST, PGUSER, PGPASSWORD or
# ~/.pgpass; AWS from the instance role), never from this text.
started_at=$(utc_now)
mkdir -p "$KB_LOCAL_DIR"
local_path="$KB_LOCAL_DIR/$KB_FILE_NAME"
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

# One transaction holds a snapshot open; pg_dump and the row counts both read it,
# so the manifest's counts describe exactly what the archive holds, even while the
# application writes. The snapshot lives as long as this session stays open.
coproc SNAPSHOT { pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$KB_DATABASE" -v excluded="$KB_EXCLUDE_TABLES" 2>&1 >/dev/null; }
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

session "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot() AS snapshot, to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS until, current_setting('server_version_num') AS server_version \\gset
\\warn KB::snapshot :until :server_version" >"$work/snapshot"
read -r snapshot until server_version <"$work/snapshot"

# Exact counts of every table the dump holds; query_to_xml runs count(*) per table
# inside this same statement, so all of them see the exported snapshot.
session "SELECT coalesce(json_object_agg(n.nspname || '.' || c.relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint ORDER BY n.nspname, c.relname), '{}') AS tables FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' AND c.relname <> ALL (string_to_array(:'excluded', ' ')) \\gset
\\warn KB::tables" >"$work/tables.json"

exclude=()
for table in $KB_EXCLUDE_TABLES; do exclude+=("--exclude-table=$table"); done

# Dump, compress, keep the local copy and stream to S3 in one pass: no temporary
# file beyond the local copy the source document keeps anyway.
pg pg_dump --no-password --format=plain --snapshot="$snapshot" "${exclude[@]}" -d "$KB_DATABASE" 2>"$work/dump.err" \
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
excluded_json=
for table in $KB_EXCLUDE_TABLES; do excluded_json+="\"$table\","; done

# The manifest goes up last: an archive without one is not in the catalog.
{
  printf '{\n  "version": 1,\n  "kind": "full",\n  "target": "%s",\n  "database": "%s",\n' "$KB_TARGET" "$KB_DATABASE"
  printf '  "runId": "%s",\n  "executionId": "%s",\n' "$KB_RUN_ID" "$KB_EXECUTION_ID"
  printf '  "archive": {"key": "%s", "localPath": "%s", "fileName": "%s", "size": %s, "sha256": "%s", "format": "plain", "compression": "%s"},\n' \
    "$KB_ARCHIVE_KEY" "$local_path" "$KB_FILE_NAME" "$size" "$sha256" "$KB_COMPRESSION"
  printf '  "window": {"since": null, "until": "%s"},\n' "$until"
  printf '  "startedAt": "%s",\n  "finishedAt": "%s",\n  "serverVersion": "%s",\n' "$started_at" "$finished_at" "$server_version"
  printf '  "excludedTables": [%s],\n' "${excluded_json%,}"
  printf '  "tables": %s,\n' "$(cat "$work/tables.json")"
  printf '  "verification": {"state": "unverified"}\n}\n'
} >"$work/manifest.json"
s3_put "$KB_MANIFEST_KEY" application/json <"$work/manifest.json"

echo "database-backup: $KB_DATABASE -> s3://$KB_BUCKET/$KB_ARCHIVE_KEY ($size bytes, sha256 $sha256)"
