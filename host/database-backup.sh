#!/bin/bash
# Database backup, run on the DB host by SSM Run Command (or the local runner).
#   full:             pg_dump of every table, without the log tables' rows
#   safety:           pg_dump of everything, taken by a restore before it replaces a database
#   incremental:      the rows whose updated_at falls in [since, until), as upserts
#   transaction-logs: the log tables' rows whose created_at falls in [since, until)
# It ends by printing one result line of the facts only the host knows; the
# workflow's VerifyArchive stage reads the archive and writes its manifest:
#   KB-RESULT {"size": N, "sha256": "…", "startedAt": "…", "finishedAt": "…", "until": "…", "serverVersion": "…"}
#
# Parameters are prepended as shell assignments by shared/host/shell.ts:
#   KB_KIND KB_SINCE (empty: from the beginning) KB_WINDOW_COLUMN (empty for a full dump)
#   KB_DATABASE KB_EXCLUDE_TABLES (space-separated) KB_PG_MODE (host|docker)
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

# One transaction holds a snapshot open and pg_dump (or the extract) reads it, so
# the archive holds the database as of one instant even while the application
# writes. The snapshot lives as long as this session stays open. Production is
# read once: the rows per table are counted from the archive by VerifyArchive.
# The session's stderr (its \warn answers and any error) goes to the pipe read
# below; its stdout is not wanted.
# shellcheck disable=SC2069
coproc SNAPSHOT { pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$KB_DATABASE" -v excluded="$KB_EXCLUDE_TABLES" -v kind="$KB_KIND" -v since="$KB_SINCE" -v column="$KB_WINDOW_COLUMN" 2>&1 >/dev/null; }
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

session "SELECT to_char(least(clock_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity WHERE backend_type = 'client backend' AND backend_xid IS NOT NULL AND pid <> pg_backend_pid())) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS until \\gset
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot() AS snapshot, current_setting('server_version_num') AS server_version, current_setting('server_encoding') AS server_encoding \\gset
\\warn KB::snapshot :until :server_version :server_encoding" >"$work/snapshot"
read -r snapshot until server_version server_encoding <"$work/snapshot"
# `until` is read just before the snapshot is taken: the clock, or the start of
# the oldest client transaction then writing, if earlier. Every row stamped
# before `until` was written by a transaction that had started by then; if it was
# still writing, `until` is no later than its start, so its rows fall in the next
# window; otherwise it committed before the snapshot, which sees it. Read after
# the snapshot, a transaction committing in between would fall in neither. (The
# backup role needs pg_read_all_stats to see other roles' transactions.)

if [[ $KB_KIND == full || $KB_KIND == safety ]]; then
  exclude=()
  # The log tables' definitions stay in the dump, so a restore has them for the
  # log archives to fill; their rows are left out.
  for table in $KB_EXCLUDE_TABLES; do exclude+=("--exclude-table-data=$table"); done
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
else
  # pg_dump cannot select rows, so the session writes a psql script that COPYs
  # each table's rows in the window out of the same snapshot, wrapped in the SQL
  # that applies them (an upsert on the primary key). Tables with the column give
  # their rows in the window; an incremental copies tables without updated_at
  # whole (upserted); tables with neither the column nor a primary key are not
  # captured. Deleted rows are not captured at all. A marker line names each table
  # (as JSON: any name, newlines too, stays one comment line) and how it was
  # captured, so the archive itself says what it holds.
  session "$(cat <<'SQL'
WITH tables AS (
  SELECT n.nspname AS schema_name, c.relname AS table_name,
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
                   AND a.attname = :'column') AS has_column
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
    AND (c.relname = ANY (string_to_array(:'excluded', ' '))) = (:'kind' = 'transaction-logs')
), planned AS (
  SELECT *, row_number() OVER (ORDER BY schema_name, table_name) AS ord,
         CASE WHEN has_column THEN 'changedRows' WHEN :'kind' = 'incremental' AND pk IS NOT NULL THEN 'wholeTables' ELSE 'notCaptured' END AS mode,
         CASE WHEN NOT has_column THEN 'true'
              ELSE format('%I < %L', :'column', :'until')
                   || CASE WHEN :'since' = '' THEN ''
                           ELSE format(' AND %I >= %L', :'column', :'since') END
         END AS predicate
  FROM tables
), captured AS (
  SELECT * FROM planned WHERE mode <> 'notCaptured'
), lines AS (
  SELECT 0 AS ord, l.n, l.echo, l.text FROM (VALUES
    (1, false, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;'),
    (2, false, format('SET TRANSACTION SNAPSHOT %L;', :'snapshot')),
    (3, false, 'SET client_encoding = ''UTF8'';'),
    (4, true, '-- kennel-backup ' || :'kind' || ' archive'),
    (5, true, format('-- window: [%s, %s)', coalesce(nullif(:'since', ''), '-infinity'), :'until')),
    (6, true, 'SET client_encoding = ''UTF8'';')) AS l (n, echo, text)
  UNION ALL
  SELECT p.ord, 1, true, '-- kennel-backup table: '
    || json_build_object('schema', p.schema_name, 'table', p.table_name, 'capture', p.mode)::text FROM planned p
  UNION ALL
  SELECT c.ord, l.n, l.echo, l.text FROM captured c, LATERAL (VALUES
    (2, true, format('CREATE TEMP TABLE kb_changes AS SELECT %s FROM %s WITH NO DATA;', c.cols, c.qname)),
    (3, true, 'COPY kb_changes FROM stdin;'),
    -- ONLY: an inheritance parent's children are captured as tables of their own.
    (4, false, format('COPY (SELECT %s FROM ONLY %s WHERE %s) TO STDOUT;', c.cols, c.qname, c.predicate)),
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
SELECT translate(encode(convert_to(string_agg(
  CASE WHEN echo THEN '\qecho ''' || replace(replace(text, '\', '\\'), '''', '''''') || '''' ELSE text END,
  E'\n' ORDER BY ord, n), 'UTF8'), 'base64'), E'\n', '') AS script FROM lines WHERE text <> '' \gset
\warn KB::script
SQL
)" >"$work/extract.b64" # coproc descriptors do not reach a pipeline's subshells
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

echo "database-backup: $KB_KIND of $KB_DATABASE -> s3://$KB_BUCKET/$KB_ARCHIVE_KEY ($size bytes, sha256 $sha256)"
# Every value passed a strict pattern or came from date, stat, sha256sum or PostgreSQL: nothing to escape.
printf 'KB-RESULT {"size": %s, "sha256": "%s", "startedAt": "%s", "finishedAt": "%s", "until": "%s", "serverVersion": "%s"}\n' \
  "$size" "$sha256" "$started_at" "$finished_at" "$until" "$server_version"
