#!/bin/bash
# Forces a WAL segment switch, waits until PostgreSQL's archiver has pushed that
# segment to the repository (pgBackRest's archive-push), and prints one result
# line for CheckWalContinuity:
#   KB-RESULT {"segment", "idle", "walSegmentSize", "switchedAt", "archivedAt",
#              "archive", "backups", "newestFull", "newestBackup"}
# the last four from pgBackRest's `info --output=json`, reduced to the current
# database's archive and backups: the whole of it outgrows what SSM returns of a
# command's output.
#
# Parameters: KB_DATABASE (any database of the cluster, to connect to),
# KB_ARCHIVE_WAIT_SECONDS, and pgBackRest's (common.sh pgbr). The role the host
# connects as needs EXECUTE on pg_switch_wal() and the pg_monitor role (for
# pg_ls_archive_statusdir), or superuser.

pgbr_config_current

if [[ $(pg_sql "$KB_DATABASE" <<<'SHOW archive_mode') == off ]]; then
  echo "wal-switch: archive_mode is off, so no WAL reaches the repository; start the prepare-host workflow for $KB_STANZA (PostgreSQL then needs a restart)" >&2
  exit 1
fi

switched_at=$(utc_now)
# pg_switch_wal() returns the end of the segment it completed; when nothing was
# written since the last switch it switches nothing and returns the start of the
# segment in use. pg_walfile_name() of either is the newest completed segment (a
# position on a boundary names the segment before it), which holds everything
# committed before this run. Only when nothing was switched does the insert
# position taken before lie past the returned one.
if ! switch=$(
  pg_sql "$KB_DATABASE" <<'SQL'
SELECT pg_current_wal_insert_lsn() AS before \gset
SELECT pg_walfile_name(s) || ' ' || (s < :'before'::pg_lsn) FROM pg_switch_wal() s;
SQL
); then
  echo "wal-switch: could not switch the WAL segment (PostgreSQL's error is above): the target must be the primary, and the role the host connects as needs EXECUTE on pg_switch_wal() (or superuser)" >&2
  exit 1
fi
read -r segment idle <<<"$switch"
echo "wal-switch: segment $segment$([[ $idle == t ]] && echo ' (idle: nothing written since the last switch)')"

# The archiver renames pg_wal/archive_status/<segment>.ready to .done once
# archive_command succeeded, and a checkpoint later removes both with the
# segment: no .ready file, archived. pg_stat_archiver keeps only the latest file
# archived (a .backup or .history file, too), so it is read for what failed.
deadline=$((SECONDS + KB_ARCHIVE_WAIT_SECONDS))
while :; do
  if ! ready=$(pg_sql "$KB_DATABASE" -v ready="$segment.ready" <<<"SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name = :'ready'"); then
    echo "wal-switch: cannot read pg_wal/archive_status; the role the host connects as needs the pg_monitor role (or superuser)" >&2
    exit 1
  fi
  [[ $ready == 0 ]] && break
  if ((SECONDS >= deadline)); then
    archiver=$(
      pg_sql "$KB_DATABASE" <<'SQL'
SELECT format('its archiver last archived %s at %s and last failed on %s at %s (%s failures since %s)',
  coalesce(last_archived_wal, 'nothing'), coalesce(last_archived_time::text, '-'),
  coalesce(last_failed_wal, 'nothing'), coalesce(last_failed_time::text, '-'), failed_count, stats_reset)
FROM pg_stat_archiver;
SQL
    )
    echo "wal-switch: PostgreSQL has not archived WAL segment $segment within $KB_ARCHIVE_WAIT_SECONDS s: $archiver. Read archive_command's error in the PostgreSQL log, and run pgbackrest check on the host" >&2
    exit 1
  fi
  sleep 1
done
archived_at=$(utc_now)

info=$(pgbr info --output=json)
pg_sql "$KB_DATABASE" -v stanza="$KB_STANZA" -v segment="$segment" -v idle="$idle" \
  -v switched_at="$switched_at" -v archived_at="$archived_at" <<SQL
WITH stanza AS (
  SELECT s FROM jsonb_array_elements($(sql_text "$info")::jsonb) s WHERE s ->> 'name' = :'stanza'
), current_db AS (
  SELECT max((d ->> 'id')::int) AS id FROM stanza, jsonb_array_elements(s -> 'db') d
), archive AS (
  SELECT a FROM stanza, current_db, jsonb_array_elements(s -> 'archive') a
  WHERE (a #>> '{database,id}')::int = current_db.id
), backup AS (
  SELECT b ->> 'label' AS label, b ->> 'type' AS type, b #>> '{archive,start}' AS archive_start,
    (b #>> '{timestamp,start}')::bigint AS started, (b #>> '{timestamp,stop}')::bigint AS stopped,
    to_char(to_timestamp((b #>> '{timestamp,start}')::bigint) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started_at,
    to_char(to_timestamp((b #>> '{timestamp,stop}')::bigint) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS stopped_at
  FROM stanza, current_db, jsonb_array_elements(s -> 'backup') b
  WHERE (b #>> '{database,id}')::int = current_db.id
), oldest AS (
  SELECT DISTINCT ON (left(archive_start, 8)) * FROM backup ORDER BY left(archive_start, 8), started, label
)
SELECT 'KB-RESULT ' || json_build_object(
  'segment', :'segment',
  'idle', :'idle'::boolean,
  'walSegmentSize', (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
  'switchedAt', :'switched_at',
  'archivedAt', :'archived_at',
  'archive', (SELECT json_build_object('id', a ->> 'id', 'min', a ->> 'min', 'max', a ->> 'max') FROM archive),
  'backups', (SELECT coalesce(json_agg(json_build_object('label', label, 'type', type,
      'archiveStart', archive_start, 'startedAt', started_at) ORDER BY started), '[]') FROM oldest),
  'newestFull', (SELECT json_build_object('label', label, 'stoppedAt', stopped_at)
      FROM backup WHERE type = 'full' ORDER BY stopped DESC LIMIT 1),
  'newestBackup', (SELECT json_build_object('label', label, 'type', type, 'archiveStart', archive_start,
      'startedAt', started_at, 'stoppedAt', stopped_at)
      FROM backup ORDER BY stopped DESC LIMIT 1)
);
SQL
