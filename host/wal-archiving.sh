#!/bin/bash
# The target's WAL archiving as PostgreSQL and pgBackRest see it, for the
# monitoring. Reads only. Prints one result line:
# KB-RESULT {"archiver": {pg_stat_archiver, archive_mode, the current WAL segment},
#            "reason": "..." | null, "repository": {...} | null, "repositoryError": "..." | null}
# `reason` (what the server log says about the last failed segment) and the
# repository (pgBackRest's info, summarized) only with KB_DETAIL=full: the
# every-minute measurement of the archive's age needs neither.
#
# Parameters: KB_DATABASE KB_DETAIL (age | full) KB_PG_DATA KB_PG_MODE
#             KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_STANZA KB_PGBACKREST_CONFIG
#             KB_PGBACKREST_CONFIG_SHA256 KB_PGBACKREST_USER
#
# Its queries need no privilege: pg_stat_archiver, archive_mode and the WAL
# position are any role's to read, the log's location (superuser-only in SQL) is
# read from the data directory's files.

# The segment holding the current WAL position: when it is the newest archived
# one, every byte written so far is archived (pg_walfile_name counts a position
# on a segment boundary, as after a switch, in the segment it ends).
archiver=$(
  pg_sql "$KB_DATABASE" <<'SQL'
select json_build_object(
  'archiveMode', current_setting('archive_mode'),
  'archivedCount', archived_count,
  'lastArchivedWal', last_archived_wal,
  'lastArchivedAt', last_archived_time,
  'failedCount', failed_count,
  'lastFailedWal', last_failed_wal,
  'lastFailedAt', last_failed_time,
  'statsResetAt', stats_reset,
  'currentWal', pg_walfile_name(pg_current_wal_lsn()),
  'checkedAt', now())
from pg_stat_archiver
SQL
)
if [[ $KB_DETAIL != full ]]; then
  printf 'KB-RESULT {"archiver": %s}\n' "$archiver"
  exit 0
fi

# The server log: the logging collector's file, as it records it in the data
# directory (what pg_current_logfile() reads), or else (pg_ctl -l, Debian's
# pg_ctlcluster) whatever file the postmaster's stderr goes to.
server_log() {
  local pid file
  file=$(pg cat "$KB_PG_DATA/current_logfiles" 2>/dev/null | sed -n 's/^stderr //p') || file=''
  if [[ -n $file ]]; then
    [[ $file == /* ]] || file=$KB_PG_DATA/$file
    printf '%s\n' "$file"
  elif [[ $KB_PG_MODE == host ]] && pid=$(head -n 1 "$KB_PG_DATA/postmaster.pid" 2>/dev/null) &&
    file=$(readlink "/proc/$pid/fd/2") && [[ -f $file ]]; then
    printf '%s\n' "$file"
  fi
  return 0
}

# The lines about the segment's last failure, from the end of the server log:
# pgBackRest's error (its first line and indented continuation, not its generic
# HINTs) and PostgreSQL's exit code, found by the DETAIL line that names the
# segment (each failure's lines are its own: they end at its DETAIL line). Other
# sessions' lines are never taken: they could quote rows.
failure_reason() { # failure_reason SEGMENT < log
  awk -v segment="$1" '
    /^(ERROR|WARN): \[[0-9]+\]:/ { block = $0; open = 1; next }
    open && /^ +HINT:/ { open = 0; next }
    open && /^ +[^ ]/ { block = block " " $0; next }
    { open = 0 }
    /LOG: +archive command failed with exit code/ { code = $0; sub(/.*LOG: +/, "", code); next }
    /The failed archive command was: / {
      if (index($0, segment)) reason = code (block == "" ? "" : ": " block)
      block = ""; code = ""
    }
    END { gsub(/ +/, " ", reason); print reason }'
}

reason=''
failed_wal=$(pg_sql "$KB_DATABASE" <<<"select coalesce(last_failed_wal, '') from pg_stat_archiver")
if [[ -n $failed_wal ]]; then
  log=$(server_log)
  if [[ -z $log ]]; then
    reason="the server log is not a file here (docker logs, syslog); read it for $failed_wal"
  else
    # The last 4 MB: the failure is recent whenever it matters.
    # What it says is redacted where every host result is (shared/core/redact.ts).
    reason=$(pg tail -c 4194304 "$log" | failure_reason "$failed_wal") || reason=''
    [[ -n $reason ]] || reason="no lines about $failed_wal in the last 4 MB of $log"
  fi
  reason=${reason:0:600}
fi

# pgBackRest retries a repository that does not answer four times per request,
# each up to io-timeout (60 s by default); 10 s here reports one that is down in
# under a minute, while any answering repository reads its info files well within
# it. A host that sets its own (PGBACKREST_IO_TIMEOUT) keeps it.
io_timeout=(--io-timeout=10)
[[ -z ${PGBACKREST_IO_TIMEOUT:-} ]] || io_timeout=()
repository='' repository_error=''
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
pgbr_config_current 2>"$errors" || repository_error=$(cat "$errors")
if [[ -z $repository_error ]]; then
  if info=$(pgbr info --output=json "${io_timeout[@]}" 2>"$errors"); then
    # PostgreSQL reads the JSON (the host may have no JSON tool), quoted by a
    # random dollar tag that nothing in the text can close.
    tag=kb$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    repository=$(
      {
        printf 'with info as (select ($%s$' "$tag"
        printf '%s' "$info"
        printf '$%s$::jsonb) -> 0 as stanza)\n' "$tag"
        cat <<'SQL'
select json_build_object(
  'statusCode', (stanza->'status'->>'code')::int,
  'status', coalesce(nullif(stanza->'repo'->0->'status'->>'message', 'ok'), stanza->'status'->>'message'),
  'archiveMin', (select a->>'min' from jsonb_array_elements(stanza->'archive') a
                 order by (a->'database'->>'id')::int desc limit 1),
  'archiveMax', (select a->>'max' from jsonb_array_elements(stanza->'archive') a
                 order by (a->'database'->>'id')::int desc limit 1),
  'backups', jsonb_array_length(stanza->'backup'),
  'newestBackup', (select json_build_object(
                     'label', b->>'label',
                     'type', b->>'type',
                     'stoppedAt', to_timestamp((b->'timestamp'->>'stop')::bigint))
                   from jsonb_array_elements(stanza->'backup') b
                   order by (b->'timestamp'->>'stop')::bigint desc limit 1))
from info
SQL
      } | pg_sql "$KB_DATABASE"
    )
  else
    repository_error=$(tail -n 5 "$errors" | tr '\n' ' ')
    repository_error=${repository_error:0:600}
    [[ -n $repository_error ]] || repository_error='pgbackrest info failed without a message'
  fi
fi

echo "wal-archiving: archiver $archiver"
pg_sql "$KB_DATABASE" -v archiver="$archiver" -v reason="$reason" -v repository="$repository" \
  -v repository_error="$repository_error" <<'SQL'
select 'KB-RESULT ' || json_build_object(
  'archiver', :'archiver'::json,
  'reason', nullif(:'reason', ''),
  'repository', nullif(:'repository', '')::json,
  'repositoryError', nullif(:'repository_error', ''))
SQL
