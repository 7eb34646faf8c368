#!/bin/bash
# Point-in-time recovery from the target's pgBackRest repository, on the DB host
# (inside the database service's container for docker targets).
#
# Scope database: the backup set is restored side by side (host/side-cluster.sh:
# a scratch data directory, a free port, a private socket directory, archiving
# off) with `pgbackrest restore --type=time --target=<t> --target-action=promote`,
# or to the end of the WAL in the repository for "latest"; once promoted, the
# database is renamed there to the staging name and dumped (pg_dump directory
# format, in parallel), checked (pg_amcheck, every B-tree against its heap), and
# restored into the production cluster (pg_restore --create, in parallel): the
# staging database carries the source's encoding, locale, ALTER DATABASE … SET
# settings, owners and large objects. Its tables' row counts must equal the side
# cluster's. The side cluster is stopped and removed on every way out (success,
# failure, SIGTERM; SIGKILL, how the SSM agent stops a cancelled or timed-out
# command, by a guard that outlives this script: host/side-cluster.sh
# side_guard); what a reboot or a killed guard left is removed by the run's
# clean-up (restore-cleanup.sh) and by the next run.
#
# Scope scratch (the monthly recovery drill): the same side cluster, recovered
# to the target and promoted, then checked whole and removed: pg_amcheck of every
# database, every table of every database read with its exact row count. Nothing
# is copied into production, which it never writes to.
#
# Scope cluster: PostgreSQL is stopped, `pgbackrest restore --delta` brings the
# whole data directory to the target, PostgreSQL is started with the options it
# ran with (its postmaster.opts, kept aside: side-cluster.sh cluster_start) and
# waits until it has promoted. Everything the cluster wrote after the target is
# gone from it (the repository keeps it on the old timeline). pgBackRest removes
# pg_control before it restores anything and puts it back last, so a restore cut
# short (a cancel, a timeout) leaves a data directory PostgreSQL refuses to start
# on; restore-cleanup.sh reports it, and this recovery run again finishes it.
#
# Both first commit a transaction and switch the WAL segment, and wait until that
# segment is archived: the WAL up to now is in the repository, and a commit later
# than any target in the past ends the recovery there (PostgreSQL fails a recovery
# whose WAL ends before its target time).
#
# KB_SOURCE vault: the repository is read from its copy in the vault's bucket
# (KB_REPOSITORY_OPTIONS, pgBackRest's --repo1-s3-bucket, -region and -endpoint,
# given to restore and info; restore passes them on to the archive-get of the
# restore_command it writes, so the WAL replayed is the vault's too). Nothing is
# archived first: the backup bucket's repository may be lost, and what PostgreSQL
# archives now reaches the vault only by replication (the plan checks the vault
# holds WAL stored after the target). Nothing here writes to either repository:
# the side cluster runs with archive_mode=off; a whole cluster archives nothing
# while it recovers (archive_mode=on archives only once promoted), then into the
# backup bucket's repository its conf names, never the vault.
#
# Prints one result line:
# KB-RESULT {"scope", "set", "targetTime", "backupBytes", "timeline",
#   "stoppedBefore", "lastTransactionAt", "database"?, "staging"?, "tables"?,
#   "rows"?, "amcheck"?, "swept"?, "startedAt", "finishedAt",
#   "databases"?, "unlogged", "unloggedCount", "refreshedViews"?, "refreshedViewsCount"?,
#   "seconds": {"restore", "recovery", "checks"?, "copy"?, "total"}}
# unlogged lists the recovered database's (scope database) or every database's
# unlogged tables and sequences, [DATABASE, SCHEMA, NAME, "table"|"sequence"]
# (at most UNLOGGED_LISTED; unloggedCount counts them all): they come back empty
# whatever the target (host/common.sh unlogged_sql says why). refreshedViews
# (scope database) lists the same way the database's populated materialized
# views, [DATABASE, SCHEMA, NAME]: the copy refreshed them from the recovered tables.
# stoppedBefore and lastTransactionAt are PostgreSQL's words from the recovered
# cluster's log (the first transaction not applied; the last one applied), or null.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_STANZA
# KB_PGBACKREST_CONFIG KB_PGBACKREST_CONFIG_SHA256 KB_PGBACKREST_USER
# KB_SOURCE (primary or vault) KB_REPOSITORY_OPTIONS (one option a line; empty: the conf's repository)
# KB_SCOPE (database, scratch or cluster) KB_SET (the backup set's label) KB_TARGET_TIME
# (ISO 8601 with a zone; empty: the end of the WAL) KB_TARGET_TIMELINE (the
# timeline to recover along to KB_TARGET_TIME) KB_WAL_FROM KB_WAL_TO
# (the plan's WAL: the base's first segment, the one holding the target or, for
# the end of the WAL, the newest listed, which replay must reach; or empty)
# KB_WAL_PATH KB_WAL_SEGMENT_BYTES (scope cluster: the segments read before
# PostgreSQL is stopped, wal_readable) KB_RUN (the run's id)
# KB_ARCHIVE_WAIT_SECONDS KB_RECOVERY_WAIT_SECONDS (how long recovery may take
# after consistency) KB_JOBS (pg_dump/pg_restore processes).
# Scope database: KB_DATABASE KB_STAGING KB_ABSENT (a database that must not
# exist, or empty) KB_SCRATCH_ROOT KB_SCRATCH_USER KB_LOCK_DIR; scope scratch:
# the last three.
# Scope cluster: KB_PG_DATA (the cluster's data directory) KB_PG_LOG (the run's
# own log of the restarted server). KB_TEST_HOLD_FILE: tests only, never set by a
# host command: once the side cluster is up, it stays until the test removes it.

started_at=$(utc_now)
side_script=point-in-time-restore
if [[ ! $KB_SET =~ $SET_PATTERN ]]; then
  echo "point-in-time-restore: \"$KB_SET\" is not a pgBackRest backup label; start the recovery again from the workflow" >&2
  exit 2
fi
if [[ ! $KB_RUN =~ $RUN_PATTERN ]]; then
  echo "point-in-time-restore: \"$KB_RUN\" is not a run id; start the recovery again from the workflow" >&2
  exit 2
fi
if [[ $KB_SOURCE != primary && $KB_SOURCE != vault ]]; then
  echo "point-in-time-restore: \"$KB_SOURCE\" is neither primary nor vault; start the recovery again from the workflow" >&2
  exit 2
fi
# Where the repository is read: the vault's bucket, region and endpoint, or (none) the conf's.
repository_options=()
while IFS= read -r option; do
  [[ -z $option ]] && continue
  if [[ ! $option =~ ^--repo1-s3-(bucket|region|endpoint)=[A-Za-z0-9.-]+$ ]]; then
    echo "point-in-time-restore: \"$option\" is not a repository's bucket, region or endpoint; start the recovery again from the workflow" >&2
    exit 2
  fi
  repository_options+=("$option")
done <<<"$KB_REPOSITORY_OPTIONS"
if [[ $KB_SOURCE == vault && ${#repository_options[@]} == 0 ]] || [[ $KB_SOURCE == primary && ${#repository_options[@]} != 0 ]]; then
  echo "point-in-time-restore: the repository's options do not match the source $KB_SOURCE; start the recovery again from the workflow" >&2
  exit 2
fi
target_args=(--type=default)
if [[ -n $KB_TARGET_TIME ]]; then
  if [[ ! $KB_TARGET_TIMELINE =~ ^[1-9][0-9]{0,9}$ ]]; then
    echo "point-in-time-restore: \"$KB_TARGET_TIMELINE\" is not a timeline; start the recovery again from the workflow" >&2
    exit 2
  fi
  # The timeline production was on at the target time (the plan's): PostgreSQL would follow the newest.
  target_args=(--type=time "--target=$KB_TARGET_TIME" "--target-timeline=$KB_TARGET_TIMELINE" --target-action=promote)
fi

phase=prepare
fail() {
  echo "point-in-time-restore to ${KB_TARGET_TIME:-the end of the WAL} ($phase): $*" >&2
  exit 1
}

# Commits a transaction, switches the WAL segment and waits until PostgreSQL has
# archived it (its .ready file is gone). Fails when PostgreSQL does not answer.
switched_lsn=0/0
switched_segment=''
switch_and_archive() {
  local segment ready deadline=$((SECONDS + KB_ARCHIVE_WAIT_SECONDS)) switched
  switched=$(pg_sql postgres <<'SQL'
SELECT pg_current_xact_id() \g /dev/null
SELECT pg_walfile_name(lsn) || '|' || lsn FROM pg_switch_wal() AS lsn;
SQL
) || return 1
  IFS='|' read -r segment switched_lsn <<<"$switched"
  switched_segment=$segment
  while :; do
    ready=$(pg_sql postgres -v ready="$segment.ready" <<<"SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name = :'ready'") || return 1
    [[ $ready == 0 ]] && break
    if ((SECONDS >= deadline)); then
      echo "point-in-time-restore: PostgreSQL has not archived WAL segment $segment within $KB_ARCHIVE_WAIT_SECONDS s; the recovery would miss the newest changes. Read archive_command's error in the PostgreSQL log (the wal-archive-age alarm says since when)" >&2
      return 1
    fi
    waited sleep 1
  done
  echo "point-in-time-restore: WAL up to segment $segment is in the repository"
}

# Where the replay of a recovery ended, read on the promoted cluster from its new
# timeline's history file (pg_wal/0000000N.history, "<parent> <switch LSN>
# <reason>" a line, the last line the switch this recovery made): "t" when it
# reached the switch LSN of the WAL archived first (switch_and_archive; 0/0 when
# none) and read into the newest segment the plan listed (KB_WAL_TO for the end
# of the WAL; empty: none), then the end LSN, the segment holding it and the one after, on the
# parent timeline, '|'-separated.
replay_end_sql=$(cat <<'SQL'
WITH history AS (
  SELECT split_part(line, E'\t', 1)::int AS parent, split_part(line, E'\t', 2)::pg_lsn AS lsn
  FROM regexp_split_to_table(pg_read_file('pg_wal/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || '.history'), E'\n') AS line
  WHERE line ~ E'^[0-9]+\t'
  ORDER BY 1 DESC LIMIT 1
), size AS (SELECT setting::numeric AS bytes FROM pg_settings WHERE name = 'wal_segment_size')
SELECT lsn >= :'switched'::pg_lsn AND substr(pg_walfile_name(lsn - 1), 9) >= substr(:'newest', 9),
  lsn, upper(lpad(to_hex(parent), 8, '0')) || substr(pg_walfile_name(lsn - 1), 9),
  upper(lpad(to_hex(parent), 8, '0')) || substr(pg_walfile_name(lsn - 1 + bytes), 9)
FROM history, size
SQL
)

# A recovery to the end of the WAL (no KB_TARGET_TIME; a target time PostgreSQL
# fails itself when the WAL ends before it) ends, as PostgreSQL does,
# at the first segment restore_command cannot get: a segment cut short or a
# transient error of the repository ends it as silently as the true end. Fails
# unless its replay reached the WAL archived first and the newest segment the
# plan saw, naming the segment it stopped before and pgBackRest's words from the
# server's log. Reads the replay end from replay_end_sql's output.
replay_reached_end() { # replay_reached_end REPLAY-END-LINE LOG-FILE WHAT-IS-LEFT
  local reached lsn last next said end=() end_text
  IFS='|' read -r reached lsn last next <<<"$1"
  [[ -n $reached ]] || fail "could not read where the replay ended (the new timeline's history file); $3"
  [[ $reached == t ]] && return 0
  [[ -n $KB_WAL_TO ]] && end+=("the newest segment listed, $KB_WAL_TO")
  [[ $switched_lsn != 0/0 ]] && end+=("LSN $switched_lsn, where the WAL archived at the start ends")
  # pgBackRest's error: its last ERROR line and the indented lines under it (the repository's words).
  said=$(pg cat "$2" | awk '/ERROR: \[[0-9]+\]/ { said = $0; more = 1; next } more && /^[[:space:]]/ { said = said " " $0; next } { more = 0 } END { print said }' |
    tr -s ' ' | cut -c1-400) || said=''
  printf -v end_text '%s; ' "${end[@]}"
  fail "replay ended at LSN $lsn in WAL segment $last, before segment $next, short of the end of the WAL (${end_text%; }): pgBackRest could not get $next: ${said:-its archive-get error is in $2}. Read that segment's object in the repository (pgbackrest verify), then run the recovery again; $3"
}

# Fetches every WAL segment a whole-cluster recovery replays, from KB_WAL_FROM
# to LAST (a segment name) along the timelines of KB_WAL_PATH, KB_JOBS at a time,
# each into a scratch file removed at once: PostgreSQL ends a replay at the first
# segment restore_command cannot get as if the WAL ended there, and in place
# that shows only once production is overwritten. Fails naming the first
# segment that could not be read and pgBackRest's words.
wal_readable() { # wal_readable LAST
  local per from to segno timeline span dir name said
  local -a names=()
  if [[ ! $KB_WAL_FROM =~ ^[0-9A-F]{24}$ || ! $1 =~ ^[0-9A-F]{24}$ || ! $KB_WAL_SEGMENT_BYTES =~ ^[0-9]{7,10}$ ||
    ! $KB_WAL_PATH =~ ^[0-9]+:[0-9]+( [0-9]+:[0-9]+)*$ ]]; then
    echo "point-in-time-restore: the plan's WAL range ($KB_WAL_FROM to $1, path $KB_WAL_PATH) is not segment names and timelines; start the recovery again from the workflow" >&2
    return 1
  fi
  per=$((0x100000000 / KB_WAL_SEGMENT_BYTES))
  from=$((16#${KB_WAL_FROM:8:8} * per + 16#${KB_WAL_FROM:16:8}))
  to=$((16#${1:8:8} * per + 16#${1:16:8}))
  for ((segno = from; segno <= to; segno += 1)); do
    # The newest timeline of the path begun by this segment (the switch segment is the new timeline's).
    timeline=1
    for span in $KB_WAL_PATH; do
      if ((${span#*:} <= segno)); then timeline=${span%%:*}; fi
    done
    names+=("$(printf '%08X%08X%08X' "$timeline" $((segno / per)) $((segno % per)))")
  done
  dir=$(work_dir) || return 1
  chown "$KB_PGBACKREST_USER" "$dir" || return 1
  echo "point-in-time-restore: reading the ${#names[@]} WAL segments from $KB_WAL_FROM to $1 from the $KB_SOURCE repository before PostgreSQL is stopped"
  for name in "${names[@]}"; do
    while (($(jobs -pr | wc -l) >= KB_JOBS)); do wait -n || true; done
    {
      if pgbr "${repository_options[@]}" archive-get "$name" "$dir/$name" >/dev/null 2>"$dir/$name.error"; then
        rm -f -- "$dir/$name" "$dir/$name.error"
      fi
    } &
  done
  wait
  for name in "${names[@]}"; do
    if [[ -e $dir/$name.error ]]; then
      said=$(tr -s ' \n' ' ' <"$dir/$name.error" | cut -c1-400)
      rm -rf -- "$dir"
      echo "point-in-time-restore: WAL segment $name cannot be read from the $KB_SOURCE repository, so the replay would end before it as if the WAL ended there: ${said:-pgbackrest archive-get failed}. Read that segment's object in the repository (pgbackrest verify), then run the recovery again" >&2
      return 1
    fi
  done
  rm -rf -- "$dir"
}

# What pgBackRest knows of the set (info --set, JSON): its size, its databases.
set_info() {
  local info
  info=$(pgbr info "${repository_options[@]}" "--set=$KB_SET" --output=json) || return 1
  if [[ $info != *"\"label\":\"$KB_SET\""* ]]; then
    echo "point-in-time-restore: the repository of stanza $KB_STANZA ($KB_SOURCE) has no backup set $KB_SET; start the recovery again (its plan reads the catalog)" >&2
    return 1
  fi
  printf '%s' "$info"
}
# The set's size in bytes, from set_info's JSON.
set_bytes() { # set_bytes INFO
  [[ $1 =~ \"info\":\{\"delta\":[0-9]+,\"repository\":\{[^}]*\},\"size\":([0-9]+)\} ]] || return 1
  echo "${BASH_REMATCH[1]}"
}

# A line of a recovered server's log, PostgreSQL's words after the marker, as a
# JSON string, or null: "recovery stopping before commit of transaction …".
log_fact() { # log_fact LOG-FILE PATTERN
  local line
  line=$(pg grep -oE "$2" "$1" | tail -n 1 | cut -c1-200 | sed 's/["\\]//g') || line=''
  if [[ -n $line ]]; then printf '"%s"' "$line"; else printf 'null'; fi
}

if [[ $KB_SCOPE == cluster ]]; then
  pgbr_config_current
  set_json=$(set_info) || fail "pgbackrest info failed (its message is above)"
  backup_bytes=$(set_bytes "$set_json") || fail "could not read the size of $KB_SET from pgbackrest info --output=json"
  phase=stop
  t=$SECONDS
  running=''
  if pg_sql postgres <<<'SELECT 1' >/dev/null 2>&1; then
    running=1
    if [[ $KB_SOURCE == primary ]]; then
      switch_and_archive || fail "the newest WAL could not be archived; nothing was changed"
    fi
  fi
  # To the segment holding the target time (on its timeline's path), or to the end of the WAL:
  # the segment archived first (switch_and_archive), else the newest listed.
  last=${switched_segment:-$KB_WAL_TO}
  if [[ -n $KB_TARGET_TIME && -n $KB_WAL_TO ]]; then last=$KB_WAL_TO; fi
  # archive-get checks the repository against pg_control, which a restore cut short left out:
  # then the data directory is no cluster to keep, and the check after replay stands alone.
  if [[ -n $last ]] && as_db_owner test -e "$KB_PG_DATA/global/pg_control"; then
    wal_readable "$last" || fail "nothing was changed"
  fi
  bindir=$(where_db server_bindir "$KB_PG_DATA") || fail "no server binaries for the cluster in $KB_PG_DATA"
  cluster_keep_opts "$KB_PG_DATA" || fail "could not keep the options PostgreSQL runs with in $(cluster_opts_file); nothing was changed"
  if [[ -n $running ]] || as_db_owner "$bindir/pg_ctl" status -D "$KB_PG_DATA" >/dev/null; then
    echo "point-in-time-restore: stopping PostgreSQL ($KB_PG_DATA)"
    waited as_db_owner "$bindir/pg_ctl" stop -D "$KB_PG_DATA" -m fast -w -t 600 >/dev/null ||
      fail "PostgreSQL did not stop; nothing was restored"
  fi
  stop_seconds=$((SECONDS - t))
  phase=restore
  t=$SECONDS
  echo "point-in-time-restore: restoring $KB_SET from the $KB_SOURCE repository over $KB_PG_DATA (--delta)"
  waited pgbr restore "${repository_options[@]}" --delta "--set=$KB_SET" "${target_args[@]}" ||
    fail "pgbackrest restore failed (its message is above); PostgreSQL is stopped: run this recovery again, or restore another set"
  restore_seconds=$((SECONDS - t))
  phase=recovery
  t=$SECONDS
  # The server's log from this start on, this run's own: its recovery's words are read from it.
  server_log=$KB_PG_LOG
  cluster_start "$bindir" "$KB_PG_DATA" "$server_log" 86400 || {
    pg tail -n 15 "$server_log" >&2 || true
    fail "PostgreSQL did not start after the restore (its log is above)"
  }
  for ((tries = 0; ; tries += 1)); do
    [[ $(pg_sql postgres <<<'SELECT pg_is_in_recovery()' 2>/dev/null) == f ]] && break
    ((tries < KB_RECOVERY_WAIT_SECONDS)) ||
      fail "PostgreSQL did not end recovery within $KB_RECOVERY_WAIT_SECONDS s; see $server_log"
    waited sleep 1
  done
  recovery_seconds=$((SECONDS - t))
  if [[ -z $KB_TARGET_TIME ]]; then
    replay_reached_end "$(pg_sql postgres -v switched="$switched_lsn" -v newest="$KB_WAL_TO" <<<"$replay_end_sql")" "$server_log" \
      "PostgreSQL runs on the cluster as recovered to that point: everything written after it is missing from it (the repository keeps it on the old timeline), and no backup was started"
  fi
  timeline=$(pg_sql postgres <<<'SELECT timeline_id FROM pg_control_checkpoint()') || timeline=0
  # The cluster is recovered: a database that cannot be listed is said, not fatal.
  while IFS= read -r name; do
    if list=$(pg_sql "dbname=$(conninfo_value "$name")" -v db="$name" <<<"$(unlogged_sql)"); then
      add_unlogged <(printf '%s\n' "$list")
    else
      echo "point-in-time-restore: could not list the unlogged tables of $name" >&2
    fi
  done < <(pg_sql postgres <<<"$(connectable_databases_sql)")
  invalid=$(pg_sql postgres <<<"$(invalid_databases_sql)") || invalid=''
  if [[ -n $invalid ]]; then
    echo "point-in-time-restore: a DROP DATABASE was under way at the target time: $invalid came back marked invalid, and no one can connect to it; drop it (DROP DATABASE), or recover to a time before that drop began" >&2
  fi
  printf 'KB-RESULT {"scope": "cluster", "set": "%s", "targetTime": %s, "backupBytes": %s, "timeline": %s, "stoppedBefore": %s, "lastTransactionAt": %s, %s, "startedAt": "%s", "finishedAt": "%s", "seconds": {"stop": %s, "restore": %s, "recovery": %s, "total": %s}}\n' \
    "$KB_SET" "$([[ -n $KB_TARGET_TIME ]] && printf '"%s"' "$KB_TARGET_TIME" || printf null)" "$backup_bytes" "${timeline:-0}" \
    "$(log_fact "$server_log" 'recovery stopping before [^"]*')" \
    "$(log_fact "$server_log" 'last completed transaction was at log time [^"]*')" \
    "$(unlogged_fields)" "$started_at" "$(utc_now)" "$stop_seconds" "$restore_seconds" "$recovery_seconds" "$SECONDS"
  exit 0
fi

# Scopes database and scratch: one area for the stanza's recoveries, a directory per run in it.
area=$(side_area "$side_script" "$KB_SCRATCH_ROOT" "$KB_STANZA")
run=$area/$KB_RUN
data=$run/data
if [[ ! -d $KB_LOCK_DIR ]]; then
  echo "point-in-time-restore: the directory $KB_LOCK_DIR for the recovery's lock does not exist on this host; create it (it is the target's backupDir)" >&2
  exit 1
fi
lock_file=$(side_lock_file "$side_script" "$KB_LOCK_DIR" "$KB_STANZA")
exec {lock}>"$lock_file"

work=''
guard_pid=''
cleanup_failed=''
# Set once this run makes its directory: before, a directory of the same name
# is another run's (one this run waits for).
run_made=''
# Stops and removes this run's side cluster; safe to call twice.
remove_run() {
  stop_child
  if [[ -n $run_made ]]; then side_remove_run "$area" "$RUN_PATTERN" "$KB_RUN" || cleanup_failed=1; fi
}
staging_created=''
on_exit() {
  local status=$?
  trap '' TERM INT
  if ((status >= 128)); then
    echo "point-in-time-restore ($phase): stopped by a signal (exit $status); removing its side cluster" >&2
  fi
  remove_run
  if ((status != 0)) && [[ -n $staging_created ]]; then
    pg dropdb --if-exists --force "$KB_STAGING" || echo "point-in-time-restore: could not drop the staging database $KB_STAGING; drop it by hand" >&2
  fi
  if [[ -n $work ]]; then rm -rf -- "$work"; fi
  # Everything is removed: the guard has nothing left to do.
  if [[ -n $guard_pid ]]; then kill "$guard_pid" 2>/dev/null || true; fi
  if [[ $status == 0 && -n $cleanup_failed ]]; then status=1; fi
  exit "$status"
}
trap on_exit EXIT

flock -n "$lock" || fail "another point-in-time recovery of $KB_STANZA runs on this host; wait for it to end"
pgbr_config_current
work=$(work_dir)
# Stops the side cluster and removes the directories if this script is killed (SIGKILL).
guard_pid=$(side_guard "$lock_file" "$area" "$RUN_PATTERN" "$KB_RUN" "$work")

exists() { # exists DATABASE
  [[ -n $(pg_sql postgres -v name="$1" <<<"SELECT 1 FROM pg_database WHERE datname = :'name'") ]]
}
set_json=$(set_info) || fail "pgbackrest info failed (its message is above)"
if [[ $KB_SCOPE == database ]]; then
  for name in "$KB_STAGING" $KB_ABSENT; do
    if exists "$name"; then
      fail "the database $name already exists; a recovery never writes into an existing database. Drop it, or choose another targetDatabase. Nothing was changed"
    fi
  done
  # Whether the database existed at the target is known once recovered; a name that is
  # neither in the backup set (pgBackRest's database-ref) nor on production now is
  # refused here, before the restore: a mistyped name, as a rule.
  if [[ $set_json != *"{\"name\":\"$KB_DATABASE\",\"oid\":"* ]] && ! exists "$KB_DATABASE"; then
    fail "the database $KB_DATABASE is neither in the backup set $KB_SET nor on $KB_STANZA now; check its name. (One created after that backup and dropped since is in the WAL only, out of reach of a one-database recovery.) Nothing was changed"
  fi
fi

swept=()
side_sweep "$KB_SCRATCH_ROOT" "$area" "$RUN_PATTERN" >"$work/swept" ||
  fail "could not remove what an interrupted recovery left in $area"
readarray -t swept <"$work/swept"
if ((${#swept[@]} > 0)); then
  echo "point-in-time-restore: removed what an interrupted recovery left: ${swept[*]}" >&2
fi

if [[ $KB_SOURCE == primary ]]; then
  switch_and_archive || fail "the newest WAL could not be archived; nothing was changed"
fi
backup_bytes=$(set_bytes "$set_json") || fail "could not read the size of $KB_SET from pgbackrest info --output=json"
# The restored files, a tenth and 256 MiB for WAL, and the dump (at most the cluster's size again; none in scratch).
copies=2 for_what="twice the backup's"
if [[ $KB_SCOPE == scratch ]]; then copies=1 for_what="the backup's"; fi
needed=$((copies * backup_bytes + backup_bytes / 10 + 256 * 1024 * 1024))
available=$(bytes_free "$area")
if ((available < needed)); then
  fail "needs $needed bytes free in $area ($for_what $backup_bytes bytes for the side cluster$([[ $KB_SCOPE == database ]] && echo ' and the dump'), a tenth more and 256 MiB for WAL), and its filesystem has $available; free space there or set pgbackrest.scratchDirectory of target $KB_STANZA to a larger filesystem. Nothing was changed"
fi

run_made=1
socket=$(where_db_as_owner side_make_run_dir "$run") ||
  fail "the cluster's OS user $KB_PGBACKREST_USER cannot create $run and a directory in /tmp; give it $area or set pgbackrest.scratchDirectory to a directory it can reach"

phase=restore
echo "point-in-time-restore: restoring $KB_SET ($backup_bytes bytes) from the $KB_SOURCE repository into $run"
t=$SECONDS
waited pgbr restore "${repository_options[@]}" "--set=$KB_SET" "${target_args[@]}" --archive-mode=off \
  "--pg1-path=$data" "--tablespace-map-all=$run/tablespaces" ||
  fail "pgbackrest restore failed (its message is above)"
restore_seconds=$((SECONDS - t))

# A tablespace production created after the set was taken: replaying its creation
# links production's own directory and writes there (side-cluster.sh
# side_new_tablespaces). Refused before the side cluster starts, whatever the
# target: the WAL does not say before replay when the tablespace was made. One
# made after this check is caught once the side cluster is up (side_start).
phase=tablespaces
new_tablespaces=$(side_new_tablespaces "$data") ||
  fail "could not compare production's tablespaces with those of backup $KB_SET; nothing was changed"
if [[ -n $new_tablespaces ]]; then
  fail "tablespace $(cut -d ' ' -f 2- <<<"$new_tablespaces" | paste -sd ';' | sed 's/;/; tablespace /g') was created after backup $KB_SET: a recovery beside production would replay its creation into production's directory and write its pages there. Take a full physical backup first (start the database full backup workflow), then recover from it to a time after it; a time before that backup can be recovered only over the whole cluster (scope cluster). Nothing was changed"
fi

phase=recovery
t=$SECONDS
side_start "$run" "$socket" "$KB_SCRATCH_USER" "$KB_RECOVERY_WAIT_SECONDS" ||
  fail "the side cluster did not recover to the target (see above)"
recovery_seconds=$((SECONDS - t))
side_sql() { side_client psql -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
state=$(side_sql -d postgres <<<'SELECT pg_is_in_recovery(), timeline_id FROM pg_control_checkpoint()') ||
  fail "could not query the side cluster"
IFS='|' read -r in_recovery timeline <<<"$state"
[[ $in_recovery == f ]] || fail "the side cluster is still in recovery after it accepted connections"
if [[ -z $KB_TARGET_TIME ]]; then
  replay_reached_end "$(side_sql -d postgres -v switched="$switched_lsn" -v newest="$KB_WAL_TO" <<<"$replay_end_sql")" "$run/server.log" \
    "nothing was changed in production"
fi
stopped_before=$(log_fact "$run/server.log" 'recovery stopping before [^"]*')
last_transaction=$(log_fact "$run/server.log" 'last completed transaction was at log time [^"]*')

if [[ -n ${KB_TEST_HOLD_FILE:-} ]]; then
  # shellcheck disable=SC2154 # side_start (host/side-cluster.sh) set them
  printf '%s %s %s\n' "$side_socket" "$side_port" "$KB_SCRATCH_USER" >"$KB_TEST_HOLD_FILE"
  while [[ -e $KB_TEST_HOLD_FILE ]]; do waited sleep 0.2; done
fi

# Every table's exact row count: one JSON line each (compared after the copy; the drill reads every table).
counts_sql=$(cat <<'SQL'
SELECT format('SELECT json_build_array(%L::text, %L::text, count(*)) FROM ONLY %I.%I', n.nspname, c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C" \gexec
SQL
)
# Adds the tables and rows of a file of counts_sql's lines to `tables` and `rows`.
add_counts() { # add_counts FILE
  local line
  while IFS= read -r line; do
    [[ $line =~ ,[[:space:]]*([0-9]+)\]$ ]] || fail "unexpected count line from the side cluster"
    tables=$((tables + 1))
    rows=$((rows + BASH_REMATCH[1]))
  done <"$1"
}

if [[ $KB_SCOPE == scratch ]]; then
  phase=checks
  t=$SECONDS
  if ! waited side_client pg_amcheck --all --maintenance-db=postgres --install-missing --heapallindexed --rootdescend >"$work/amcheck" 2>&1; then
    echo "point-in-time-restore: pg_amcheck reported $(grep -c . "$work/amcheck") lines; the first:" >&2
    head -n 20 "$work/amcheck" | cut -c1-300 >&2
    fail "pg_amcheck found corruption in the cluster as recovered, or could not check it"
  fi
  databases=0
  tables=0
  rows=0
  while IFS= read -r name; do
    databases=$((databases + 1))
    waited side_sql -d "dbname=$(conninfo_value "$name")" <<<"$counts_sql" >"$work/side-counts" ||
      fail "could not read every table of $name on the recovered cluster (above)"
    add_counts "$work/side-counts"
    side_sql -d "dbname=$(conninfo_value "$name")" -v db="$name" <<<"$(unlogged_sql)" >"$work/unlogged" ||
      fail "could not list the unlogged tables of $name on the recovered cluster (above)"
    add_unlogged "$work/unlogged"
  done < <(side_sql -d postgres <<<"$(connectable_databases_sql)")
  ((databases > 0)) || fail "could not list the recovered cluster's databases"
  invalid=$(side_sql -d postgres <<<"$(invalid_databases_sql)") || invalid=''
  if [[ -n $invalid ]]; then
    echo "point-in-time-restore: not read: $invalid, which a DROP DATABASE was removing at the target time (PostgreSQL marks it invalid)" >&2
  fi
  checks_seconds=$((SECONDS - t))
  remove_run
  [[ -z $cleanup_failed ]] || exit 1
  echo "point-in-time-restore: the cluster recovered to ${KB_TARGET_TIME:-the end of the WAL} in a scratch cluster: $databases databases, $tables tables, $rows rows read; amcheck passed; the side cluster is removed"
  printf 'KB-RESULT {"scope": "scratch", "set": "%s", "targetTime": %s, "backupBytes": %s, "timeline": %s, "stoppedBefore": %s, "lastTransactionAt": %s, "databases": %s, "tables": %s, "rows": %s, "amcheck": "passed", "swept": %s, %s, "startedAt": "%s", "finishedAt": "%s", "seconds": {"restore": %s, "recovery": %s, "checks": %s, "total": %s}}\n' \
    "$KB_SET" "$([[ -n $KB_TARGET_TIME ]] && printf '"%s"' "$KB_TARGET_TIME" || printf null)" "$backup_bytes" "$timeline" \
    "$stopped_before" "$last_transaction" "$databases" "$tables" "$rows" "$(json_list "${swept[@]}")" "$(unlogged_fields)" \
    "$started_at" "$(utc_now)" "$restore_seconds" "$recovery_seconds" "$checks_seconds" "$SECONDS"
  exit 0
fi

phase=copy
t=$SECONDS
[[ -n $(side_sql -d postgres -v name="$KB_DATABASE" <<<"SELECT 1 FROM pg_database WHERE datname = :'name'") ]] ||
  fail "the database $KB_DATABASE did not exist at the target time; pick a later time, or another database. Nothing was changed"
[[ -z $(side_sql -d postgres -v name="$KB_DATABASE" <<<"SELECT 1 FROM pg_database WHERE datname = :'name' AND datconnlimit = -2") ]] ||
  fail "the database $KB_DATABASE was being dropped at the target time (it comes back marked invalid); pick an earlier time. Nothing was changed"
# Renamed on the side cluster, so that pg_dump --create names the staging database.
side_sql -d template1 -v from="$KB_DATABASE" -v to="$KB_STAGING" <<<'ALTER DATABASE :"from" RENAME TO :"to"' ||
  fail "could not rename $KB_DATABASE on the side cluster"
waited side_client pg_dump -Fd -j "$KB_JOBS" --create -f "$run/dump" -d "dbname=$(conninfo_value "$KB_STAGING")" ||
  fail "pg_dump of $KB_DATABASE from the side cluster failed (its message is above)"
copy_seconds=$((SECONDS - t))

phase=amcheck
t=$SECONDS
# After the dump: --install-missing adds amcheck to the side cluster's database only.
if ! waited side_client pg_amcheck -d "$KB_STAGING" --install-missing --heapallindexed --rootdescend >"$work/amcheck" 2>&1; then
  echo "point-in-time-restore: pg_amcheck reported $(grep -c . "$work/amcheck") lines; the first:" >&2
  head -n 20 "$work/amcheck" | cut -c1-300 >&2
  fail "pg_amcheck found corruption in $KB_DATABASE as recovered, or could not check it; nothing was changed"
fi
waited side_sql -d "$KB_STAGING" <<<"$counts_sql" >"$work/side-counts" ||
  fail "could not count the rows of $KB_DATABASE on the side cluster"
waited side_sql -d "$KB_STAGING" -v db="$KB_DATABASE" <<<"$(unlogged_sql)" >"$work/unlogged" ||
  fail "could not list the unlogged tables of $KB_DATABASE on the side cluster"
add_unlogged "$work/unlogged"
# Its populated materialized views: pg_dump writes them WITH NO DATA and a
# REFRESH, so the copy holds what their query gives over the recovered tables,
# not their rows at the target. Named in the summary (shared/restore/refreshed-views.ts).
refreshed_views=$(side_sql -d "$KB_STAGING" -v db="$KB_DATABASE" -v listed="$UNLOGGED_LISTED" <<'SQL'
SELECT format('"refreshedViews": %s, "refreshedViewsCount": %s',
  coalesce(json_agg(json_build_array(:'db'::text, nspname, relname) ORDER BY n) FILTER (WHERE n <= :listed), '[]'), count(*))
FROM (SELECT n.nspname, c.relname, row_number() OVER (ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C") AS n
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'm' AND c.relispopulated) v
SQL
) || fail "could not list the materialized views of $KB_DATABASE on the side cluster"
checks_seconds=$((SECONDS - t))

phase=copy
t=$SECONDS
exists "$KB_STAGING" && fail "the database $KB_STAGING appeared on production during the recovery; it is not this run's and stays. Nothing was changed"
staging_created=1
waited pg pg_restore -d postgres --create --exit-on-error -j "$KB_JOBS" "$run/dump" ||
  fail "pg_restore into the production cluster failed (its message is above); the staging database is dropped"
copy_seconds=$((copy_seconds + SECONDS - t))
remove_run
[[ -z $cleanup_failed ]] || exit 1

pg_sql "$KB_STAGING" <<<"$counts_sql" >"$work/staging-counts" || fail "could not count the rows of $KB_STAGING"
if ! cmp -s "$work/side-counts" "$work/staging-counts"; then
  diff "$work/side-counts" "$work/staging-counts" | head -n 10 | cut -c1-300 >&2
  fail "the staging database's row counts differ from the recovered database's (above); the staging database is dropped"
fi
tables=0
rows=0
add_counts "$work/side-counts"
echo "point-in-time-restore: $KB_DATABASE recovered to ${KB_TARGET_TIME:-the end of the WAL} and copied into $KB_STAGING: $tables tables, $rows rows; amcheck passed; the side cluster is removed"
printf 'KB-RESULT {"scope": "database", "set": "%s", "targetTime": %s, "backupBytes": %s, "timeline": %s, "stoppedBefore": %s, "lastTransactionAt": %s, "database": "%s", "staging": "%s", "tables": %s, "rows": %s, "amcheck": "passed", "swept": %s, %s, %s, "startedAt": "%s", "finishedAt": "%s", "seconds": {"restore": %s, "recovery": %s, "checks": %s, "copy": %s, "total": %s}}\n' \
  "$KB_SET" "$([[ -n $KB_TARGET_TIME ]] && printf '"%s"' "$KB_TARGET_TIME" || printf null)" "$backup_bytes" "$timeline" \
  "$stopped_before" "$last_transaction" "$KB_DATABASE" "$KB_STAGING" "$tables" "$rows" "$(json_list "${swept[@]}")" "$(unlogged_fields)" "$refreshed_views" \
  "$started_at" "$(utc_now)" "$restore_seconds" "$recovery_seconds" "$checks_seconds" "$copy_seconds" "$SECONDS"
