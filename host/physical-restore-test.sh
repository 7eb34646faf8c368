#!/bin/bash
# Restore test of one pgBackRest backup set, on the DB host (inside the database
# service's container for docker targets): the set is restored into a scratch data
# directory, recovered to the backup's consistent point and promoted, started on a
# free port with its socket in a private directory, and checked: pg_amcheck on
# every database, every row of every table read (FROM ONLY, every column as text),
# exact row counts. The scratch instance is stopped and its directory removed on
# every way out: success, a failed check, an error, SIGTERM; and SIGKILL, which is
# how the SSM agent stops a cancelled or timed-out command, by a guard that
# outlives this script (host/side-cluster.sh side_guard). What a reboot or a
# killed guard left behind is removed by the next run, which names it in its
# result.
#
# The scratch instance is a side cluster (host/side-cluster.sh), which can
# never touch production.
#
# Prints one result line:
# KB-RESULT {"set": LABEL, "state": "passed", "backupBytes": N, "consistentAt": LSN,
#   "timeline": N, "amcheck": "passed", "databases": [{"name", "tables", "rows",
#   "counts"?: [[schema, table, rows], ...]}], "tables": N, "rows": N,
#   "countsDigest": SHA256, "countsListed": BOOL, "swept": [PATH, ...],
#   "unlogged": [[DATABASE, SCHEMA, NAME, KIND], ...], "unloggedCount": N,
#   "startedAt", "finishedAt", "seconds": {"restore", "recovery", "checks", "total"}}
# Per-table counts are listed while the line stays under RESULT_BUDGET characters
# (Run Command returns the first 24,000 of stdout); past that only each database's
# totals and the digest are in it, and the counts follow it on stdout, one line per
# table, for the command's log. countsDigest is the sha256 of one line per database
# (by name, bytewise): `[NAME,[[SCHEMA,TABLE,ROWS],...]]` as compact JSON, tables
# ordered by schema then name, bytewise. Unlogged tables are read and counted
# like the others (empty: no backup holds their rows) and named in "unlogged"
# (host/common.sh unlogged_sql).
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_STANZA
# KB_PGBACKREST_CONFIG KB_PGBACKREST_CONFIG_SHA256 KB_PGBACKREST_USER
# KB_SET (the backup set's label) KB_SCRATCH_ROOT (the scratch area, where the
# database lives) KB_SCRATCH_USER (a superuser role of the restored cluster)
# KB_LOCK_DIR (a directory on the host for the lock that keeps one restore test per
# stanza at a time). KB_TEST_HOLD_FILE: tests only, never set by a host command:
# once checked, the instance stays up until the test removes this file.

RESULT_BUDGET=20000
started_at=$(utc_now)
set_label=$KB_SET
if [[ ! $set_label =~ $SET_PATTERN ]]; then
  echo "physical-restore-test: \"$set_label\" is not a pgBackRest backup label (e.g. 20250101-020000F); start the restore test with a label that pgbackrest info lists" >&2
  exit 2
fi
# One area per stanza, a directory per backup set in it: everything under it is ours.
side_script=physical-restore-test
area=$(side_area "$side_script" "$KB_SCRATCH_ROOT" "$KB_STANZA")
run=$area/$set_label
data=$run/data
socket=''

# One restore test per stanza at a time on this host: a second waits for the
# first. Holding the lock, every scratch directory of the stanza is a leftover.
# No process that may outlive this script inherits the lock's descriptor (waited,
# pg_ctl), or a leftover could hold it.
if [[ ! -d $KB_LOCK_DIR ]]; then
  echo "physical-restore-test: the directory $KB_LOCK_DIR for the restore test's lock does not exist on this host; create it (it is the target's backupDir)" >&2
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
  if [[ -n $run_made ]]; then side_remove_run "$area" "$SET_PATTERN" "$set_label" || cleanup_failed=1; fi
}
on_exit() {
  local status=$?
  trap '' TERM INT
  if ((status >= 128)); then
    echo "physical-restore-test of $set_label (${phase:-prepare}): stopped by a signal (exit $status); removing its scratch instance" >&2
  fi
  remove_run
  if [[ -n $work ]]; then rm -rf -- "$work"; fi
  # Everything is removed: the guard has nothing left to do.
  if [[ -n $guard_pid ]]; then kill "$guard_pid" 2>/dev/null || true; fi
  if [[ $status == 0 && -n $cleanup_failed ]]; then status=1; fi
  exit "$status"
}
trap on_exit EXIT

# Every failure names the phase it happened in (prepare, restore, recovery,
# amcheck, read), which the catalog records.
phase=prepare
fail() {
  echo "physical-restore-test of $set_label ($phase): $*" >&2
  exit 1
}

if ! flock -n "$lock"; then
  echo "physical-restore-test: waiting for the restore test of $KB_STANZA already running on this host" >&2
  flock "$lock" &
  child=$!
  wait "$child"
  child=''
fi
pgbr_config_current
work=$(work_dir)
# Stops the scratch instance and removes the directories if this script is killed (SIGKILL).
guard_pid=$(side_guard "$lock_file" "$area" "$SET_PATTERN" "$set_label" "$work")

swept=()
side_sweep "$KB_SCRATCH_ROOT" "$area" "$SET_PATTERN" >"$work/swept" ||
  fail "could not remove what an interrupted restore test left in $area"
readarray -t swept <"$work/swept"
if ((${#swept[@]} > 0)); then
  echo "physical-restore-test: removed what an interrupted restore test left: ${swept[*]}" >&2
fi

# The set, and the room it needs: the restored files (the backup's size), plus a
# tenth and 256 MiB for the WAL replayed and written after promotion, so the test
# never fills the filesystem it shares with others.
info=$(pgbr info "--set=$set_label" --output=json) || fail "pgbackrest info failed"
[[ $info == *"\"label\":\"$set_label\""* ]] ||
  fail "the repository of stanza $KB_STANZA has no backup set $set_label (pgbackrest info: requested backup not found); pick a set that pgbackrest info lists"
[[ $info =~ \"info\":\{\"delta\":[0-9]+,\"repository\":\{[^}]*\},\"size\":([0-9]+)\} ]] ||
  fail "could not read the size of $set_label from pgbackrest info --output=json"
backup_bytes=${BASH_REMATCH[1]}
[[ $info =~ \"lsn\":\{\"start\":\"[0-9A-F/]+\",\"stop\":\"([0-9A-F]+/[0-9A-F]+)\"\} ]] ||
  fail "could not read the stop LSN of $set_label from pgbackrest info --output=json"
stop_lsn=${BASH_REMATCH[1]}
if [[ $info == *'"error":true'* ]]; then
  fail "pgBackRest found page checksum errors while taking $set_label (info: error=true): the source cluster has corrupt pages, so this backup is not a sound base; see the backup's log in pgBackRest's log-path"
fi
needed=$((backup_bytes + backup_bytes / 10 + 256 * 1024 * 1024))

available=$(bytes_free "$area")
if ((available < needed)); then
  fail "needs $needed bytes free in $area (the backup's $backup_bytes bytes, a tenth more and 256 MiB for WAL), and its filesystem has $available; free space there or set pgbackrest.scratchDirectory of target $KB_STANZA to a larger filesystem. Nothing was restored"
fi

run_made=1
socket=$(where_db_as_owner side_make_run_dir "$run") ||
  fail "the cluster's OS user $KB_PGBACKREST_USER cannot create $run and a directory in /tmp; give it $area or set pgbackrest.scratchDirectory to a directory it can reach"

phase=restore
echo "physical-restore-test: restoring $set_label ($backup_bytes bytes) into $run"
t=$SECONDS
waited pgbr restore "--set=$set_label" --type=immediate --target-action=promote --archive-mode=off \
  "--pg1-path=$data" "--tablespace-map-all=$run/tablespaces" ||
  fail "pgbackrest restore failed (its message is above); the backup set cannot be restored"
restore_seconds=$((SECONDS - t))

# A tablespace production has and the set lacks was created after the backup
# began; if during it, the replay to the backup's end would link production's
# directory and write there. It is trapped (side-cluster.sh
# side_trap_tablespaces), not refused: one created after the backup ended is
# never replayed here.
new_tablespaces=$(side_new_tablespaces "$data") ||
  fail "could not compare production's tablespaces with those of backup $set_label"
if [[ -n $new_tablespaces ]]; then
  mapfile -t oids < <(cut -d ' ' -f 1 <<<"$new_tablespaces")
  where_db_as_owner side_trap_tablespaces "$data" "${oids[@]}" ||
    fail "could not guard the scratch instance's pg_tblspc against production's tablespaces"
fi

phase=recovery
t=$SECONDS
# The consistent point is reached once it has started, so promotion takes
# seconds: 5 minutes without an answer is a fault, not a long recovery.
side_start "$run" "$socket" "$KB_SCRATCH_USER" 300 ||
  fail "the backup and its WAL do not recover to a consistent state, or the scratch instance could not start (see above)"
recovery_seconds=$((SECONDS - t))

state=$(side_client psql -X -A -t -v ON_ERROR_STOP=1 -d postgres -v "stop=$stop_lsn" <<'SQL'
SELECT pg_is_in_recovery(), timeline_id, pg_last_wal_replay_lsn(), pg_last_wal_replay_lsn() >= :'stop'::pg_lsn
FROM pg_control_checkpoint()
SQL
) || fail "could not query the scratch instance"
IFS='|' read -r in_recovery timeline consistent_at reached <<<"$state"
[[ $in_recovery == f ]] || fail "the scratch instance is still in recovery after it accepted connections"
[[ $reached == t ]] ||
  fail "recovery stopped at $consistent_at, before the backup's stop LSN $stop_lsn: the restored cluster is not consistent"

phase=amcheck
t=$SECONDS
# Every database, every relation: heap pages and TOAST (verify_heapam), every
# B-tree against its heap (--heapallindexed) and from its root (--rootdescend).
if ! waited side_client pg_amcheck --all --install-missing --heapallindexed --rootdescend >"$work/amcheck" 2>&1; then
  echo "physical-restore-test: pg_amcheck reported $(grep -c . "$work/amcheck") lines; the first:" >&2
  head -n 20 "$work/amcheck" | cut -c1-300 >&2
  fail "pg_amcheck found corruption or could not check the restored cluster"
fi

phase='read'
# Every row of every table of every database read, each column turned to text
# (so every TOAST value is fetched and decompressed), each table on its own
# (FROM ONLY: a parent's count is its own rows), one statement each (one lock at a
# time). Names travel as JSON from PostgreSQL, never split or re-quoted here.
waited side_client psql -X -A -t -0 -v ON_ERROR_STOP=1 -d postgres \
  -c "$(connectable_databases_sql)" >"$work/databases" ||
  fail "could not list the databases of the scratch instance"
invalid=$(side_client psql -X -A -t -d postgres -c "$(invalid_databases_sql)") || invalid=''
if [[ -n $invalid ]]; then
  echo "physical-restore-test: not read: $invalid, which a DROP DATABASE was removing when the backup ended (PostgreSQL marks it invalid)" >&2
fi
readarray -d '' databases <"$work/databases"
database_items=()
digest_lines=''
total_tables=0
total_rows=0
for database in "${databases[@]}"; do
  if ! waited side_client psql -X -A -t -q -b -v ON_ERROR_STOP=1 -d "dbname=$(conninfo_value "$database")" \
    >"$work/counts" 2>"$work/counts.err" <<'SQL'; then
SELECT to_json(current_database());
SELECT format(
  'SELECT array_to_json(ARRAY[to_json(%L::text), to_json(%L::text), to_json(count(*))]) FROM ONLY %I.%I AS kb_row WHERE length((kb_row.*)::text) >= 0',
  n.nspname, c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated))
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C" \gexec
SQL
    head -c 2000 "$work/counts.err" >&2
    fail "a table of database $database could not be read in full (the statement and error are above)"
  fi
  name_json=''
  tables=0
  rows=0
  counts=''
  while IFS= read -r line; do
    if [[ -z $name_json ]]; then
      name_json=$line
      continue
    fi
    [[ $line =~ ,([0-9]+)\]$ ]] || fail "unexpected count line from database $database"
    tables=$((tables + 1))
    rows=$((rows + BASH_REMATCH[1]))
    counts+="${counts:+,}$line"
  done <"$work/counts"
  total_tables=$((total_tables + tables))
  total_rows=$((total_rows + rows))
  digest_lines+="[$name_json,[$counts]]"$'\n'
  database_items+=("$name_json"$'\t'"$tables"$'\t'"$rows"$'\t'"[$counts]")
  # Read above with 0 rows, as every restore has them: named, so that no one takes them for lost rows.
  waited side_client psql -X -A -t -q -v ON_ERROR_STOP=1 -d "dbname=$(conninfo_value "$database")" \
    -v db="$database" <<<"$(unlogged_sql)" >"$work/unlogged" ||
    fail "could not list the unlogged tables of database $database"
  add_unlogged "$work/unlogged"
done
checks_seconds=$((SECONDS - t))
counts_digest=$(printf '%s' "$digest_lines" | sha256sum | cut -d' ' -f1)

if [[ -n ${KB_TEST_HOLD_FILE:-} ]]; then
  # shellcheck disable=SC2154 # side_start (host/side-cluster.sh) set them
  printf '%s %s %s\n' "$side_socket" "$side_port" "$KB_SCRATCH_USER" >"$KB_TEST_HOLD_FILE"
  while [[ -e $KB_TEST_HOLD_FILE ]]; do waited sleep 0.2; done
fi

remove_run
[[ -z $cleanup_failed ]] || exit 1
echo "physical-restore-test: $set_label restored, recovered to $consistent_at and checked: $total_tables tables, $total_rows rows in ${#databases[@]} databases; amcheck passed; the scratch instance is stopped and removed"

result() { # result WITH-COUNTS
  local items=() item name tables rows counts
  for item in "${database_items[@]}"; do
    IFS=$'\t' read -r name tables rows counts <<<"$item"
    if [[ $1 == true ]]; then
      items+=("{\"name\": $name, \"tables\": $tables, \"rows\": $rows, \"counts\": $counts}")
    else
      items+=("{\"name\": $name, \"tables\": $tables, \"rows\": $rows}")
    fi
  done
  local joined
  joined=$(IFS=,; printf '%s' "${items[*]}")
  printf 'KB-RESULT {"set": "%s", "state": "passed", "backupBytes": %s, "consistentAt": "%s", "timeline": %s, "amcheck": "passed", "databases": [%s], "tables": %s, "rows": %s, "countsDigest": "%s", "countsListed": %s, "swept": %s, %s, "startedAt": "%s", "finishedAt": "%s", "seconds": {"restore": %s, "recovery": %s, "checks": %s, "total": %s}}\n' \
    "$set_label" "$backup_bytes" "$consistent_at" "$timeline" "$joined" "$total_tables" "$total_rows" \
    "$counts_digest" "$1" "$(json_list "${swept[@]}")" "$(unlogged_fields)" "$started_at" "$(utc_now)" \
    "$restore_seconds" "$recovery_seconds" "$checks_seconds" "$SECONDS"
}
line=$(result true)
if ((${#line} <= RESULT_BUDGET)); then
  printf '%s\n' "$line"
else
  result false
  # Past the result line, for the command's log: Run Command returns only the first 24,000 characters.
  for item in "${database_items[@]}"; do
    IFS=$'\t' read -r name _ _ counts <<<"$item"
    printf 'counts %s %s\n' "$name" "$counts"
  done
fi
