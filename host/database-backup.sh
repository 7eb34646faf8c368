#!/bin/bash
# Database backup, run on the DB host by SSM Run Command (or the local runner).
#   full:             pg_dump of every table, without the log tables' rows
#   safety:           pg_dump of everything, taken by a restore before it replaces a database
#   incremental:      the rows whose updated_at falls in [since, until), as upserts
#   transaction-logs: the log tables' rows whose created_at falls in [since, until)
#
# Parameters are prepended as shell assignments by shared/host/shell.ts:
#   KB_KIND KB_SINCE (empty: from the beginning)
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
coproc SNAPSHOT { pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$KB_DATABASE" -v excluded="$KB_EXCLUDE_TABLES" -v kind="$KB_KIND" -v since="$KB_SINCE" 2>&1 >/dev/null; }
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

session "SELECT to_char(least(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity WHERE backend_type = 'client backend' AND backend_xid IS NOT NULL AND pid <> pg_backend_pid())) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS until \\gset
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot() AS snapshot, current_setting('server_version_num') AS server_version \\gset
\\warn KB::snapshot :until :server_version" >"$work/snapshot"
read -r snapshot until server_version <"$work/snapshot"
# `until` is read just before the snapshot is taken: the clock, or the start of
# the oldest client transaction then writing, if earlier. Every row stamped
# before `until` was written by a transaction that had started by then; if it was
# still writing, `until` is no later than its start, so its rows fall in the next
# window; otherwise it committed before the snapshot, which sees it. Read after
# the snapshot, a transaction committing in between would fall in neither. (The
# backup role needs pg_read_all_stats to see other roles' transactions.)

if [[ $KB_KIND == full || $KB_KIND == safety ]]; then
  format=plain
  # Exact counts of every table the dump holds; query_to_xml runs count(*) per table
  # inside this same statement, so all of them see the exported snapshot.
  session "SELECT coalesce(json_object_agg(n.nspname || '.' || c.relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint ORDER BY n.nspname, c.relname), '{}') AS tables FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' AND c.relname <> ALL (string_to_array(:'excluded', ' ')) \\gset
\\warn KB::tables" >"$work/tables.json"
  echo null >"$work/capture.json"

  exclude=()
  # The log tables' definitions stay in the dump, so a restore has them for the
  # log archives to fill; their rows are left out.
  for table in $KB_EXCLUDE_TABLES; do exclude+=("--exclude-table-data=$table"); done
  # Dump, compress, keep the local copy and stream to S3 in one pass: no temporary
  # file beyond the local copy the source document keeps anyway.
  pg pg_dump --no-password --format=plain --snapshot="$snapshot" "${exclude[@]}" -d "$KB_DATABASE" 2>"$work/dump.err" \
    | $KB_COMPRESS \
    | tee "$local_path" \
    | s3_put "$KB_ARCHIVE_KEY" application/octet-stream \
    || { cat "$work/dump.err" >&2; exit 1; }
else
  format=changes
  # pg_dump cannot select rows, so the session writes a psql script that COPYs
  # each table's rows in the window out of the same snapshot, wrapped in the SQL
  # that applies them (an upsert on the primary key). Tables with the column give
  # their rows in the window; an incremental copies tables without updated_at
  # whole (upserted); tables with neither the column nor a primary key are listed
  # as not captured. Deleted rows are not captured at all.
  session "$(cat <<'SQL'
WITH tables AS (
  SELECT n.nspname || '.' || c.relname AS name,
         format('%I.%I', n.nspname, c.relname) AS qname,
         (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS cols,
         (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
           WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
         (SELECT string_agg(format('%1$I = EXCLUDED.%1$I', a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
             AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey))) AS updates,
         -- Sequences owned by the table move forward to their value in the snapshot.
         (SELECT string_agg(format('SELECT setval(%L, %s) WHERE %s > (SELECT last_value FROM %s);',
                    s.seq, q.last_value, q.last_value, s.seq), ' ')
            FROM pg_attribute a,
                 LATERAL (SELECT pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) AS seq) s,
                 LATERAL (SELECT ps.last_value FROM pg_sequences ps
                          WHERE format('%I.%I', ps.schemaname, ps.sequencename)::regclass = s.seq::regclass) q
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND s.seq IS NOT NULL
              AND q.last_value IS NOT NULL) AS sequences,
         EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped
                   AND a.attname = CASE :'kind' WHEN 'incremental' THEN 'updated_at' ELSE 'created_at' END) AS has_column
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
    AND (c.relname = ANY (string_to_array(:'excluded', ' '))) = (:'kind' = 'transaction-logs')
), planned AS (
  SELECT *, row_number() OVER (ORDER BY name) AS ord,
         CASE WHEN has_column THEN 'changed' WHEN :'kind' = 'incremental' AND pk IS NOT NULL THEN 'whole' ELSE 'not-captured' END AS mode,
         CASE WHEN NOT has_column THEN 'true'
              ELSE format('%I < %L', CASE :'kind' WHEN 'incremental' THEN 'updated_at' ELSE 'created_at' END, :'until')
                   || CASE WHEN :'since' = '' THEN ''
                           ELSE format(' AND %I >= %L', CASE :'kind' WHEN 'incremental' THEN 'updated_at' ELSE 'created_at' END, :'since') END
         END AS predicate
  FROM tables
), captured AS (
  SELECT * FROM planned WHERE mode <> 'not-captured'
), lines AS (
  SELECT 0 AS ord, l.n, l.echo, l.text FROM (VALUES
    (1, false, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;'),
    (2, false, format('SET TRANSACTION SNAPSHOT %L;', :'snapshot')),
    (3, false, 'SET client_encoding = ''UTF8'';'),
    (4, true, '-- kennel-backup ' || :'kind' || ' archive'),
    (5, true, format('-- window: [%s, %s)', coalesce(nullif(:'since', ''), '-infinity'), :'until')),
    (6, true, 'SET client_encoding = ''UTF8'';')) AS l (n, echo, text)
  UNION ALL
  SELECT c.ord, l.n, l.echo, l.text FROM captured c, LATERAL (VALUES
    (1, true, '-- kennel-backup table: ' || c.name),
    (2, true, format('CREATE TEMP TABLE kb_changes AS SELECT %s FROM %s WITH NO DATA;', c.cols, c.qname)),
    (3, true, 'COPY kb_changes FROM stdin;'),
    (4, false, format('COPY (SELECT %s FROM %s WHERE %s) TO STDOUT;', c.cols, c.qname, c.predicate)),
    (5, true, '\.'),
    -- The rows carry their own updated_at: the table's triggers must not restamp them.
    (6, true, format('ALTER TABLE %s DISABLE TRIGGER USER;', c.qname)),
    (7, true, format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM kb_changes%s;', c.qname, c.cols, c.cols,
       CASE WHEN c.pk IS NULL THEN ''
            WHEN :'kind' = 'transaction-logs' OR c.updates IS NULL THEN format(' ON CONFLICT (%s) DO NOTHING', c.pk)
            ELSE format(' ON CONFLICT (%s) DO UPDATE SET %s', c.pk, c.updates) END)),
    (8, true, format('ALTER TABLE %s ENABLE TRIGGER USER;', c.qname)),
    (9, true, 'DROP TABLE kb_changes;'),
    (10, true, coalesce(c.sequences, ''))) AS l (n, echo, text)
  UNION ALL
  SELECT 1000000000, l.n, l.echo, l.text FROM (VALUES
    (1, true, '-- kennel-backup archive complete'),
    (2, false, 'COMMIT;')) AS l (n, echo, text)
)
SELECT
  (SELECT coalesce(json_object_agg(name, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %s WHERE %s', qname, predicate), false, true, '')))[1]::text::bigint ORDER BY name), '{}') FROM captured) AS tables,
  (SELECT json_build_object(
     'note', 'Rows are chosen by ' || CASE :'kind' WHEN 'incremental' THEN 'updated_at' ELSE 'created_at' END
       || ' in the window. Deleted rows are not captured. Tables in wholeTables have no such column and are copied whole; tables in notCaptured are not in this archive.',
     'changedRows', coalesce(json_agg(name ORDER BY name) FILTER (WHERE mode = 'changed'), '[]'),
     'wholeTables', coalesce(json_agg(name ORDER BY name) FILTER (WHERE mode = 'whole'), '[]'),
     'notCaptured', coalesce(json_agg(name ORDER BY name) FILTER (WHERE mode = 'not-captured'), '[]')) FROM planned) AS capture,
  (SELECT translate(encode(convert_to(string_agg(
     CASE WHEN echo THEN '\qecho ''' || replace(replace(text, '\', '\\'), '''', '''''') || '''' ELSE text END,
     E'\n' ORDER BY ord, n), 'UTF8'), 'base64'), E'\n', '') FROM lines WHERE text <> '') AS script \gset
\warn KB::tables
SQL
)" >"$work/tables.json"
  session '\warn KB::capture' >"$work/capture.json"
  session '\warn KB::script' >"$work/extract.b64" # coproc descriptors do not reach a pipeline's subshells
  base64 -d "$work/extract.b64" >"$work/extract.psql"

  pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$KB_DATABASE" <"$work/extract.psql" 2>"$work/dump.err" \
    | $KB_COMPRESS \
    | tee "$local_path" \
    | s3_put "$KB_ARCHIVE_KEY" application/octet-stream \
    || { cat "$work/dump.err" >&2; exit 1; }
fi

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
  printf '{\n  "version": 1,\n  "kind": "%s",\n  "target": "%s",\n  "database": "%s",\n' "$KB_KIND" "$KB_TARGET" "$KB_DATABASE"
  printf '  "runId": "%s",\n  "executionId": "%s",\n' "$KB_RUN_ID" "$KB_EXECUTION_ID"
  printf '  "archive": {"key": "%s", "localPath": "%s", "fileName": "%s", "size": %s, "sha256": "%s", "format": "%s", "compression": "%s"},\n' \
    "$KB_ARCHIVE_KEY" "$local_path" "$KB_FILE_NAME" "$size" "$sha256" "$format" "$KB_COMPRESSION"
  if [[ -n $KB_SINCE ]]; then since_json="\"$KB_SINCE\""; else since_json=null; fi
  printf '  "window": {"since": %s, "until": "%s"},\n' "$since_json" "$until"
  printf '  "startedAt": "%s",\n  "finishedAt": "%s",\n  "serverVersion": "%s",\n' "$started_at" "$finished_at" "$server_version"
  printf '  "excludedTables": [%s],\n' "${excluded_json%,}"
  printf '  "tables": %s,\n' "$(cat "$work/tables.json")"
  printf '  "capture": %s,\n' "$(cat "$work/capture.json")"
  printf '  "verification": {"state": "unverified"}\n}\n'
} >"$work/manifest.json"
s3_put "$KB_MANIFEST_KEY" application/json <"$work/manifest.json"

echo "database-backup: $KB_KIND of $KB_DATABASE -> s3://$KB_BUCKET/$KB_ARCHIVE_KEY ($size bytes, sha256 $sha256)"
