#!/bin/bash
# Restore test of one pgBackRest backup set, on the DB host (inside the database
# service's container for docker targets): the set is restored into a scratch data
# directory, recovered to the backup's consistent point and promoted, started on a
# free port with its socket in a private directory, and checked: pg_amcheck on
# every database, every row of every table read (FROM ONLY, every column as text),
# exact row counts. The scratch instance is stopped and its directory removed on
# every way out: success, a failed check, an error, SIGTERM; and SIGKILL, which is
# how the SSM agent stops a cancelled or timed-out command (its whole process
# group, amazon-ssm-agent agent/executers killProcess), by a guard that outlives
# this script. What a reboot or a killed guard left behind is removed by the next
# run, which names it in its result.
#
# The scratch instance can never touch production: archiving is off (pgBackRest's
# --archive-mode=off, and archive_mode/archive_command overridden on the command
# line, which outranks postgresql.auto.conf), so no WAL or timeline history file
# reaches the repository; it listens on no TCP address, only on a socket in a
# private directory, with its own hba file; tablespaces are restored into the
# scratch directory, never into their original locations; its memory settings are
# small, so it cannot starve the production server of memory.
#
# Prints one result line:
# KB-RESULT {"set": LABEL, "state": "passed", "backupBytes": N, "consistentAt": LSN,
#   "timeline": N, "amcheck": "passed", "databases": [{"name", "tables", "rows",
#   "counts"?: [[schema, table, rows], ...]}], "tables": N, "rows": N,
#   "countsDigest": SHA256, "countsListed": BOOL, "swept": [PATH, ...],
#   "startedAt", "finishedAt", "seconds": {"restore", "recovery", "checks", "total"}}
# Per-table counts are listed while the line stays under RESULT_BUDGET characters
# (Run Command returns the first 24,000 of stdout); past that only each database's
# totals and the digest are in it, and the counts follow it on stdout, one line per
# table, for the command's log. countsDigest is the sha256 of one line per database
# (by name, bytewise): `[NAME,[[SCHEMA,TABLE,ROWS],...]]` as compact JSON, tables
# ordered by schema then name, bytewise.
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
if [[ ! $set_label =~ ^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$ ]]; then
  echo "physical-restore-test: \"$set_label\" is not a pgBackRest backup label (e.g. 20250101-020000F); start the restore test with a label that pgbackrest info lists" >&2
  exit 2
fi
# One area per stanza, a directory per backup set in it: everything under it is ours.
area=$KB_SCRATCH_ROOT/$KB_STANZA
run=$area/$set_label
data=$run/data
# The socket's path must fit in 107 bytes (sun_path), which a scratch area with a
# long stanza and an incremental's label would not: a short private directory of
# this run's own in /tmp (make_run_dir), named in the run's directory so that a
# sweep removes it with the run.
socket=''

# Removes restore-test scratch directories and stops every process of the
# cluster's OS user working in them: the scratch postmaster (immediate shutdown,
# once the pid in its postmaster.pid is seen running in that data directory, so a
# reused pid is never signalled), its backends, a pgbackrest restore still writing
# there. With a LABEL, that set's directory only; without, every set's directory
# of the area, and processes whose directory is already gone. Prints `dir PATH`
# for each directory removed and `processes N` for those it stopped. Runs where
# the database lives, as root there (shipped as text: in a container it cannot
# run from this file). Builtins only in the scan, which runs a few times a second.
scratch_remove() { # scratch_remove AREA OWNER [LABEL]
  local area=$1 label=${3:-} uid dirs=() dir pid prefix found=0 tries
  local label_pattern='^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$'
  uid=$(id -u "$2")
  if [[ -n $label ]]; then
    [[ -d $area/$label ]] && dirs=("$area/$label")
    prefix=$area/$label/
  else
    for dir in "$area"/*; do
      [[ -d $dir && ${dir##*/} =~ $label_pattern ]] && dirs+=("$dir")
    done
    prefix=$area/
  fi
  # The owner's processes under the prefix: by their directory, or by a path on their command line.
  ours() {
    local proc key value cwd args
    for proc in /proc/[0-9]*; do
      [[ ${proc#/proc/} == "$$" ]] && continue
      value=''
      # A process may end while it is looked at: its files are gone then.
      while read -r key value _; do
        [[ $key == Uid: ]] && break
      done 2>/dev/null <"$proc/status"
      [[ $value == "$uid" ]] || continue
      cwd=$(readlink "$proc/cwd" 2>/dev/null) || cwd=''
      mapfile -d '' args 2>/dev/null <"$proc/cmdline" || args=()
      if [[ ${cwd% (deleted)}/ == "$prefix"* || "${args[*]}" == *"$prefix"* ]]; then
        printf '%s\n' "${proc#/proc/}"
      fi
    done
  }
  found=$(ours | grep -c .) || true
  for dir in "${dirs[@]}"; do
    [[ -f $dir/data/postmaster.pid ]] || continue
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    if [[ $pid =~ ^[0-9]+$ && $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$dir/data" ]]; then
      kill -QUIT "$pid" 2>/dev/null || true
    fi
  done
  for tries in {1..100}; do
    [[ -z $(ours) ]] && break
    # An immediate shutdown takes a moment; whatever still runs after 10 s is killed.
    if ((tries % 50 == 0)); then
      for pid in $(ours); do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    sleep 0.2
  done
  if [[ -n $(ours) ]]; then
    echo "physical-restore-test: processes $(ours | tr '\n' ' ')still run in $prefix after SIGKILL; remove it once they are gone" >&2
    return 1
  fi
  for dir in "${dirs[@]}"; do
    # The run's socket directory in /tmp, when it is one make_run_dir made.
    if [[ -f $dir/socket-dir && $(<"$dir/socket-dir") =~ ^/tmp/kb-restore-test\.[A-Za-z0-9]+$ ]]; then
      rm -rf -- "$(<"$dir/socket-dir")"
    fi
    rm -rf -- "$dir"
    printf 'dir %s\n' "$dir"
  done
  printf 'processes %s\n' "$found"
}

# Runs one of this script's functions where the database lives: as root there
# (where_db), or as the cluster's OS user (where_db_as_owner).
where_db() { # where_db FUNCTION ARGS...
  { declare -f "$1"; printf '%s "$@"\n' "$1"; } | pg bash -s -- "${@:2}"
}
where_db_as_owner() { # where_db_as_owner FUNCTION ARGS...
  { declare -f "$1"; printf '%s "$@"\n' "$1"; } | as_db_owner bash -s -- "${@:2}"
}

# The first port from a random start in 20000-29999 on which nothing listens
# where the database lives: the scratch instance listens on no TCP address, but
# its port also keys its shared memory, which must not be production's.
free_port() {
  local file listening=' ' _sl address _rem st port
  for file in /proc/net/tcp /proc/net/tcp6; do
    [[ -r $file ]] || continue
    while read -r _sl address _rem st _; do
      [[ $st == 0A ]] && listening+="$((16#${address##*:})) "
    done <"$file"
  done
  port=$((20000 + RANDOM % 10000))
  for _ in {1..10000}; do
    [[ $listening == *" $port "* ]] || { echo "$port"; return 0; }
    port=$((port == 29999 ? 20000 : port + 1))
  done
  echo "physical-restore-test: every port in 20000-29999 is taken" >&2
  return 1
}

# The server binaries of the restored cluster's major version: pg_ctl on PATH if
# it is that version, else the Debian or PGDG layout. Prints their directory.
server_bindir() { # server_bindir DATA-DIRECTORY
  local version dir tried=() found
  version=$(cat "$1/PG_VERSION")
  found=$(command -v pg_ctl || true)
  for dir in ${found:+"${found%/*}"} "/usr/lib/postgresql/$version/bin" "/usr/pgsql-$version/bin"; do
    tried+=("$dir")
    [[ -x $dir/postgres && -x $dir/pg_ctl && -x $dir/pg_amcheck && -x $dir/psql && -x $dir/pg_isready ]] || continue
    [[ $("$dir/postgres" --version) =~ \)\ ([0-9]+) && ${BASH_REMATCH[1]} == "$version" ]] || continue
    echo "$dir"
    return 0
  done
  echo "physical-restore-test: no PostgreSQL $version server binaries (postgres, pg_ctl, pg_amcheck, psql, pg_isready) in ${tried[*]}; install the server package of version $version where the database runs" >&2
  return 1
}

# The scratch run's directory, made by the cluster's OS user (pgBackRest restores
# as it and the instance runs as it), with a trust hba for the private socket only.
make_run_dir() { # make_run_dir RUN: prints the socket directory it made
  local socket
  mkdir -m 700 "$1" "$1/data" "$1/tablespaces"
  printf 'local all all trust\n' >"$1/hba.conf"
  socket=$(mktemp -d /tmp/kb-restore-test.XXXXXXXX)
  printf '%s\n' "$socket" >"$1/socket-dir"
  printf '%s\n' "$socket"
}

# One restore test per stanza at a time on this host: a second waits for the
# first. Holding the lock, every scratch directory of the stanza is a leftover.
# No process that may outlive this script inherits the lock's descriptor (waited,
# pg_ctl), or a leftover could hold it.
if [[ ! -d $KB_LOCK_DIR ]]; then
  echo "physical-restore-test: the directory $KB_LOCK_DIR for the restore test's lock does not exist on this host; create it (it is the target's backupDir)" >&2
  exit 1
fi
exec {lock}>"$KB_LOCK_DIR/.physical-restore-test.$KB_STANZA.lock"

child=''
work=''
guard_pid=''
run_made=''
cleanup_failed=''
# Stops and removes this run's scratch instance; safe to call twice.
remove_run() {
  if [[ -n $child ]]; then
    kill "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
    child=''
  fi
  [[ -n $run_made ]] || return 0
  if where_db scratch_remove "$area" "$KB_PGBACKREST_USER" "$set_label" >/dev/null; then
    run_made=''
  else
    echo "physical-restore-test: could not remove the scratch instance in $run; the next restore test of $KB_STANZA removes it" >&2
    cleanup_failed=1
  fi
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

# Runs a command in the background and waits for it, so that SIGTERM is handled
# at once (bash runs a trap only after its foreground command has ended). Its
# standard input stays this script's (a background job's would be /dev/null).
waited() {
  "$@" <&0 {lock}>&- &
  child=$!
  local status=0
  wait "$child" || status=$?
  child=''
  return "$status"
}

if ! flock -n "$lock"; then
  echo "physical-restore-test: waiting for the restore test of $KB_STANZA already running on this host" >&2
  flock "$lock" &
  child=$!
  wait "$child"
  child=''
fi
pgbr_config_current
work=$(mktemp -d)

# The guard: SIGKILL to this script's process group runs no trap, and the scratch
# postmaster (pg_ctl starts it in a session of its own) would outlive the script.
# A subshell in a process group of its own (job control on for that one job, in
# a subshell of its own: toggled in this shell, it leaves a later `wait PID` of an
# already reaped child waiting on any child) waits for this script to end however it ends, then takes the stanza's lock (so
# that a later test of the same set, which holds it, never loses its instance to
# the guard) and removes this run's scratch instance and work directory. It
# inherits no descriptor the agent reads (its output would hold the command open)
# and not the lock's (it would keep the lock held while it waits).
guard() { # guard PID START-TIME
  trap - EXIT TERM INT
  exec {lock}>&-
  local stat fields
  while read -r stat 2>/dev/null <"/proc/$1/stat"; do
    read -ra fields <<<"${stat##*) }"
    # The process's start time (stat field 22): a reused pid is not this script.
    [[ ${fields[19]} == "$2" ]] || break
    sleep 0.5
  done
  exec {lock}>"$KB_LOCK_DIR/.physical-restore-test.$KB_STANZA.lock"
  flock "$lock"
  where_db scratch_remove "$area" "$KB_PGBACKREST_USER" "$set_label" || true
  rm -rf -- "$work"
}
read -r stat <"/proc/$$/stat"
read -ra stat_fields <<<"${stat##*) }"
guard_pid=$(
  set -m
  guard "$$" "${stat_fields[19]}" </dev/null >/dev/null 2>&1 &
  echo "$!"
)

swept=()
where_db scratch_remove "$area" "$KB_PGBACKREST_USER" >"$work/swept" ||
  fail "could not remove what an interrupted restore test left in $area"
while read -r what path; do
  if [[ $what == dir ]]; then swept+=("$path"); fi
done <"$work/swept"
if ((${#swept[@]} > 0)); then
  echo "physical-restore-test: removed what an interrupted restore test left: ${swept[*]} ($(grep '^processes' "$work/swept"))" >&2
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

# A scratch root made here is the cluster's OS user's; one that exists stays as it is.
if ! pg test -d "$KB_SCRATCH_ROOT"; then
  pg mkdir -p -m 700 "$KB_SCRATCH_ROOT"
  pg chown "$KB_PGBACKREST_USER" "$KB_SCRATCH_ROOT"
fi
pg mkdir -p -m 700 "$area"
pg chown "$KB_PGBACKREST_USER" "$area"
read -r _ _ _ available _ < <(pg df -P -B1 "$area" | tail -n 1)
if ((available < needed)); then
  fail "needs $needed bytes free in $area (the backup's $backup_bytes bytes, a tenth more and 256 MiB for WAL), and its filesystem has $available; free space there or set pgbackrest.scratchDirectory of target $KB_STANZA to a larger filesystem. Nothing was restored"
fi

run_made=1
socket=$(where_db_as_owner make_run_dir "$run") ||
  fail "the cluster's OS user $KB_PGBACKREST_USER cannot create $run and a directory in /tmp; give it $area or set pgbackrest.scratchDirectory to a directory it can reach"

phase=restore
echo "physical-restore-test: restoring $set_label ($backup_bytes bytes) into $run"
t=$SECONDS
waited pgbr restore "--set=$set_label" --type=immediate --target-action=promote --archive-mode=off \
  "--pg1-path=$data" "--tablespace-map-all=$run/tablespaces" ||
  fail "pgbackrest restore failed (its message is above); the backup set cannot be restored"
restore_seconds=$((SECONDS - t))

phase=recovery
t=$SECONDS
bindir=$(where_db server_bindir "$data") || fail "no server binaries for the restored cluster"
port=$(where_db free_port) || fail "no free port for the scratch instance"
# The restored postgresql.conf (if the cluster keeps it in its data directory) and
# postgresql.auto.conf stay as production has them; the command line outranks
# both, so whatever they say, these hold. No config file at all (Debian keeps it
# in /etc): an empty one.
options="-p $port -c listen_addresses='' -c unix_socket_directories=$socket -c unix_socket_permissions=0700"
options+=" -c data_directory=$data -c hba_file=$run/hba.conf -c ident_file=$run/hba.conf"
options+=" -c external_pid_file=$run/postmaster.external.pid -c cluster_name=kb-restore-test"
options+=" -c archive_mode=off -c archive_command='' -c archive_library=''"
options+=" -c primary_conninfo='' -c primary_slot_name='' -c synchronous_standby_names='' -c hot_standby=off"
options+=" -c shared_buffers=128MB -c huge_pages=off -c max_connections=20 -c autovacuum=off"
options+=" -c shared_preload_libraries='' -c logging_collector=off -c ssl=off"
as_db_owner touch -a "$data/postgresql.conf"
server_log() {
  echo "physical-restore-test: the scratch instance's log ends with:" >&2
  pg tail -n 15 "$run/server.log" >&2 || true
}
# pg_ctl -w returns once recovery has reached a consistent state (with hot_standby
# off, the postmaster then says "standby"), or fails if it never does; the SSM
# timeout bounds the wait, not pg_ctl's.
if ! waited as_db_owner "$bindir/pg_ctl" start -w -t 86400 -D "$data" -l "$run/server.log" -o "$options" >/dev/null; then
  server_log
  fail "the scratch instance did not start (its log is above): unless the log names another cause, the backup and its WAL do not recover to a consistent state"
fi
# Then until it has promoted: pg_isready says 0 once it accepts connections. The
# consistent point is reached already, so promotion takes seconds: 5 minutes
# without an answer is a fault, not a long recovery.
for ((tries = 0; ; tries += 1)); do
  as_db_owner "$bindir/pg_isready" -q -h "$socket" -p "$port" && break
  if ! as_db_owner "$bindir/pg_ctl" status -D "$data" >/dev/null; then
    server_log
    fail "the scratch instance stopped during recovery: the backup and its WAL do not recover to a consistent state"
  fi
  if ((tries >= 600)); then
    server_log
    fail "the scratch instance did not accept connections on its socket in $socket within 5 minutes of reaching a consistent state"
  fi
  waited sleep 0.5
done
recovery_seconds=$((SECONDS - t))

# Client tools on the scratch instance: a clean environment (none of production's
# PG* variables), its socket, its port, timeouts of the restored roles and
# databases overruled.
scratch() { # scratch TOOL ARGS...
  local tool=$1
  shift
  as_db_owner env -i PGOPTIONS='-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0 -c default_transaction_read_only=off' \
    "$bindir/$tool" -h "$socket" -p "$port" -U "$KB_SCRATCH_USER" "$@"
}
# A conninfo value: single-quoted, with \ and ' escaped.
conninfo_value() {
  local value=${1//\\/\\\\}
  printf "'%s'" "${value//\'/\\\'}"
}

state=$(scratch psql -X -A -t -v ON_ERROR_STOP=1 -d postgres -v "stop=$stop_lsn" <<'SQL'
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
if ! waited scratch pg_amcheck --all --install-missing --heapallindexed --rootdescend >"$work/amcheck" 2>&1; then
  echo "physical-restore-test: pg_amcheck reported $(grep -c . "$work/amcheck") lines; the first:" >&2
  head -n 20 "$work/amcheck" | cut -c1-300 >&2
  fail "pg_amcheck found corruption or could not check the restored cluster"
fi

phase='read'
# Every row of every table of every database read, each column turned to text
# (so every TOAST value is fetched and decompressed), each table on its own
# (FROM ONLY: a parent's count is its own rows), one statement each (one lock at a
# time). Names travel as JSON from PostgreSQL, never split or re-quoted here.
waited scratch psql -X -A -t -0 -v ON_ERROR_STOP=1 -d postgres \
  -c 'SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname COLLATE "C"' >"$work/databases" ||
  fail "could not list the databases of the scratch instance"
readarray -d '' databases <"$work/databases"
database_items=()
digest_lines=''
total_tables=0
total_rows=0
for database in "${databases[@]}"; do
  if ! waited scratch psql -X -A -t -q -b -v ON_ERROR_STOP=1 -d "dbname=$(conninfo_value "$database")" \
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
done
checks_seconds=$((SECONDS - t))
counts_digest=$(printf '%s' "$digest_lines" | sha256sum | cut -d' ' -f1)

if [[ -n ${KB_TEST_HOLD_FILE:-} ]]; then
  printf '%s %s %s\n' "$socket" "$port" "$KB_SCRATCH_USER" >"$KB_TEST_HOLD_FILE"
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
  printf 'KB-RESULT {"set": "%s", "state": "passed", "backupBytes": %s, "consistentAt": "%s", "timeline": %s, "amcheck": "passed", "databases": [%s], "tables": %s, "rows": %s, "countsDigest": "%s", "countsListed": %s, "swept": %s, "startedAt": "%s", "finishedAt": "%s", "seconds": {"restore": %s, "recovery": %s, "checks": %s, "total": %s}}\n' \
    "$set_label" "$backup_bytes" "$consistent_at" "$timeline" "$joined" "$total_tables" "$total_rows" \
    "$counts_digest" "$1" "$(json_list "${swept[@]}")" "$started_at" "$(utc_now)" \
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
