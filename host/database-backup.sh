#!/bin/bash
# Database backup (a logical dump), run on the DB host by SSM Run Command (or the local runner).
#   full:    pg_dump of every table, the log tables' rows left out (KB_EXCLUDE_TABLES)
#   monthly: pg_dump of every table, the log tables' rows included: the long-term copy
#   safety:  pg_dump of everything, taken by a restore before it replaces a database
# It ends by printing one result line of the facts only the host knows; the
# workflow's VerifyArchive stage reads the archive and writes its manifest:
#   KB-RESULT {"size": N, "sha256": "…", "startedAt": "…", "finishedAt": "…", "until": "…", "serverVersion": "…",
#              "excludedPresent": [N, …] (which of KB_EXCLUDE_TABLES the database has, by index from 0)}
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
# Written beside and renamed once complete: a file at the final name is a whole
# archive, and one a killed run left is a *.partial leftover (host_leftovers).
partial=$local_path.partial
work=$(work_dir)
snapshot_pid=
cleanup() {
  local status=$?
  set +e # errexit would stop the clean-up at its first failing step
  if [[ -n $snapshot_pid ]]; then kill "$snapshot_pid" 2>/dev/null; fi
  if ((status != 0)); then
    rm -f "$partial" "$local_path"
    if [[ -s $work/snapshot.err ]]; then sed 's/^/snapshot session: /' "$work/snapshot.err" >&2; fi
    echo "database-backup: failed with status $status; nothing was recorded in the catalog" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
s3_put_ready
compress_ready

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
SELECT pg_export_snapshot() AS snapshot, to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS until, current_setting('server_version_num') AS server_version, current_setting('server_encoding') AS server_encoding, pg_database_size(current_database()) AS database_size \\gset
\\warn KB::snapshot :until :server_version :server_encoding :database_size" >"$work/snapshot"
read -r snapshot until server_version server_encoding database_size <"$work/snapshot"

# The database itself, from the same snapshot, for a restore to make it again:
# its encoding, locale, owner, ALTER DATABASE … SET and ALTER ROLE … IN DATABASE
# … SET settings, and the roles its objects need (owners, grantees, the roles of
# its settings, policies and default privileges: pg_shdepend, which records
# nothing of the bootstrap superuser, named when it owns one of the database's
# own objects), with their attributes and memberships among them; never a
# password (pg_roles has none). It becomes the archive's first line, a comment
# to psql, as base64 of its JSON: UTF-8, but for SQL_ASCII, whose bytes have no
# conversion and go as they are. Setting values stay in the archive: one may be
# a secret (PostgREST's app.jwt_secret), which no command or state may carry.
properties_sql=$(cat <<'SQL'
WITH db AS (
  SELECT d.oid, d.datdba, d.encoding, d.datcollate, d.datctype, to_jsonb(d) AS row
  FROM pg_database d WHERE d.datname = current_database()
), superuser_owns AS (
  SELECT 1 FROM pg_class c WHERE c.relowner = 10 AND c.oid >= 16384 AND c.relkind NOT IN ('i', 'I', 't')
    AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid AND e.deptype = 'e')
  UNION ALL
  SELECT 1 FROM pg_namespace n WHERE n.nspowner = 10 AND (n.oid >= 16384 OR n.nspname = 'public')
    AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass AND e.objid = n.oid AND e.deptype = 'e')
  UNION ALL
  SELECT 1 FROM pg_proc p WHERE p.proowner = 10 AND p.oid >= 16384
    AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')
  UNION ALL
  SELECT 1 FROM pg_type t WHERE t.typowner = 10 AND t.oid >= 16384 AND t.typtype IN ('d', 'e', 'r')
    AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid AND e.deptype = 'e')
), owners AS (
  SELECT s.refobjid AS oid FROM pg_shdepend s, db
  WHERE s.refclassid = 'pg_authid'::regclass AND s.deptype = 'o' AND s.dbid = db.oid
  UNION SELECT datdba FROM db
  UNION SELECT 10 WHERE EXISTS (SELECT FROM superuser_owns)
), needed AS (
  SELECT s.refobjid AS oid FROM pg_shdepend s, db
  WHERE s.refclassid = 'pg_authid'::regclass
    AND (s.dbid = db.oid OR (s.dbid = 0 AND s.classid = 'pg_database'::regclass AND s.objid = db.oid))
  UNION SELECT oid FROM owners
  UNION SELECT setrole FROM pg_db_role_setting, db WHERE setdatabase = db.oid AND setrole <> 0
)
SELECT translate(encode(convert_to(json_build_object(
  'encoding', pg_encoding_to_char(db.encoding),
  'collate', db.datcollate,
  'ctype', db.datctype,
  'localeProvider', CASE coalesce(db.row->>'datlocprovider', 'c') WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu'
                    ELSE db.row->>'datlocprovider' END,
  'icuLocale', db.row->>'daticulocale',
  'owner', pg_get_userbyid(db.datdba),
  'settings', (SELECT coalesce(json_agg(json_build_object('role', r.rolname, 'setting', c.setting) ORDER BY r.rolname NULLS FIRST, c.n), '[]')
               FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) WITH ORDINALITY c (setting, n)
               LEFT JOIN pg_roles r ON r.oid = s.setrole
               WHERE s.setdatabase = db.oid),
  'roles', (SELECT coalesce(json_agg(json_build_object(
              'name', r.rolname, 'owns', r.oid IN (SELECT oid FROM owners),
              'superuser', r.rolsuper, 'login', r.rolcanlogin, 'inherit', r.rolinherit,
              'createdb', r.rolcreatedb, 'createrole', r.rolcreaterole,
              'replication', r.rolreplication, 'bypassrls', r.rolbypassrls,
              'memberOf', (SELECT coalesce(json_agg(g.rolname ORDER BY g.rolname), '[]')
                           FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                           WHERE m.member = r.oid AND m.roleid IN (SELECT oid FROM needed)))
            ORDER BY r.rolname), '[]')
            FROM pg_roles r WHERE r.oid IN (SELECT oid FROM needed))
)::text, :'bytes'), 'base64'), E'\n', '') AS properties FROM db \gset
SQL
)
properties_bytes=UTF8
if [[ $server_encoding == SQL_ASCII ]]; then properties_bytes=SQL_ASCII; fi
session "\\set bytes $properties_bytes
$properties_sql
\\warn KB::properties" >"$work/properties"

exclude=()
# Which of KB_EXCLUDE_TABLES this database has (their indices, from 0): only
# those are left out, and the manifest names only those.
excluded_present='[]'
# The log tables' definitions stay in a full dump; their rows are left out
# (their copies are the physical backups and WAL, and the monthly dump).
if [[ -n $KB_EXCLUDE_TABLES ]]; then
  mapfile -t patterns <<<"$KB_EXCLUDE_TABLES"
  # A partitioned (or inherited) log table's rows are in its partitions (its
  # children), which pg_dump 15's --exclude-table-data does not leave out with
  # it: they are named too, as the snapshot has them. The patterns, "schema"."name",
  # are SQL's quoted names as well; they and the answer travel as base64 of UTF-8.
  descendants_sql=$(cat <<'SQL'
WITH RECURSIVE logs AS (
  SELECT to_regclass(p) AS oid, pos FROM unnest(string_to_array(rtrim(convert_from(decode(:'logs', 'base64'), 'UTF8'), E'\n'), E'\n')) WITH ORDINALITY u (p, pos)
), tree AS (
  SELECT i.inhrelid AS oid FROM pg_inherits i JOIN logs l ON i.inhparent = l.oid
  UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)
SELECT translate(encode(convert_to(coalesce(string_agg(
         format('"%s"."%s"', replace(n.nspname, '"', '""'), replace(c.relname, '"', '""')), E'\n'), ''), 'UTF8'), 'base64'), E'\n', '') AS descendants,
       (SELECT '[' || coalesce(string_agg((pos - 1)::text, ',' ORDER BY pos), '') || ']' FROM logs WHERE oid IS NOT NULL) AS present
FROM tree JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace \gset
SQL
  )
  session "\\set logs $(printf '%s\n' "${patterns[@]}" | base64 -w0)
$descendants_sql
\\warn KB::present :descendants" >"$work/descendants.line"
  read -r excluded_present descendants_base64 <"$work/descendants.line"
  base64 -d <<<"${descendants_base64:-}" >"$work/descendants"
  mapfile -t descendants <"$work/descendants"
  for pattern in "${patterns[@]}" "${descendants[@]}"; do exclude+=("--exclude-table-data=$pattern"); done
fi
# The dump is written in UTF-8 whatever the database's encoding, as VerifyArchive
# reads the tables' names in it (a restore converts back). SQL_ASCII has no
# conversion to UTF-8, so its bytes are dumped as they are.
encoding=()
if [[ $server_encoding != SQL_ASCII ]]; then encoding=(--encoding=UTF8); fi
# An upper bound on the archive's size, for the upload's part size (s3_put): a
# compressed plain dump is smaller than the database's files, but for
# incompressible bytea, which the dump writes as hex and zstd (gzip) brings back
# to about 1.04 (1.14) times its bytes; twice the database bounds both.
expected_size=$((2 * database_size))
# Dump, compress, keep the local copy, stream to S3 and take the sha256 in one
# pass: no temporary file beyond the local copy the source document keeps anyway.
# Each stage records its status (`stage`): the object is created only if all succeeded.
dump() {
  printf -- '-- kennel-backup database-properties %s %s\n' "$properties_bytes" "$(<"$work/properties")" \
    && pg pg_dump --no-password --format=plain --snapshot="$snapshot" "${encoding[@]}" "${exclude[@]}" -d "$KB_DATABASE" 2>"$work/dump.err"
}
# shellcheck disable=SC2086 # KB_COMPRESS is a command and its options
stage "$work/dump.status" dump \
  | stage "$work/compress.status" $KB_COMPRESS \
  | store_archive "$partial" "$KB_ARCHIVE_KEY" "$expected_size" "$work" "$work/dump.status" "$work/compress.status" >"$work/sha256" \
  || { cat "$work/dump.err" >&2; exit 1; }

printf 'COMMIT;\n' >&"$to_session"
exec {to_session}>&-
wait "$snapshot_pid" || true
snapshot_pid=

size=$(stat -c %s "$partial")
sha256=$(<"$work/sha256")
mv "$partial" "$local_path"
finished_at=$(utc_now)

echo "database-backup: $KB_KIND of $KB_DATABASE -> s3://$KB_BUCKET/$KB_ARCHIVE_KEY ($size bytes, sha256 $sha256)"
# Every value passed a strict pattern or came from date, stat, sha256_hex or PostgreSQL: nothing to escape.
printf 'KB-RESULT {"size": %s, "sha256": "%s", "startedAt": "%s", "finishedAt": "%s", "until": "%s", "serverVersion": "%s", "excludedPresent": %s}\n' \
  "$size" "$sha256" "$started_at" "$finished_at" "$until" "$server_version" "$excluded_present"
