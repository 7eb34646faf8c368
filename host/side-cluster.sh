# shellcheck shell=bash
# A side cluster: a pgBackRest backup restored into a scratch data directory and
# started beside production, on a free port with its socket in a private
# directory, archiving off. The restore test and the point-in-time recovery use
# it; shared/host/shell.ts renders this file after common.sh for the scripts that
# do (SIDE_CLUSTER_SCRIPTS).
#
# The side cluster can never touch production: archiving is off (pgBackRest's
# --archive-mode=off, and archive_mode/archive_command overridden on the command
# line, which outranks postgresql.auto.conf), so no WAL or timeline history file
# reaches the repository; it listens on no TCP address, only on a socket in a
# private directory, with its own hba file; tablespaces are restored into the
# scratch directory, never into their original locations, and one production
# created after the backup, whose creation the replay would link to production's
# own directory, is refused or trapped before the side cluster starts
# (side_new_tablespaces, side_trap_tablespaces), and looked for once it is up
# (side_links_inside); its memory settings are
# small, so it cannot starve the production server of memory.
#
# A script using it sets `side_script` (its name, for messages) and, when it holds
# a lock no long-lived child may inherit, `lock` (the descriptor). It keeps `child`
# (a waited command) for its EXIT trap.

side_script=${side_script:-side-cluster}
child=''

# Removes side-cluster scratch directories and stops every process of the
# cluster's OS user working in them: the side postmaster (immediate shutdown,
# once the pid in its postmaster.pid is seen running in that data directory, so a
# reused pid is never signalled), its backends, a pgbackrest restore still writing
# there. With a NAME, that run's directory only; without, every directory of the
# area whose name matches PATTERN (an extended regular expression), and processes
# whose directory is already gone. Prints `dir PATH` for each directory removed
# and `processes N` for those it stopped. Runs where the database lives, as root
# there (shipped as text by where_db: in a container it cannot run from this
# file). Builtins only in the scan, which runs a few times a second.
side_remove() { # side_remove AREA OWNER PATTERN [NAME]
  local area=$1 pattern=$3 name=${4:-} uid dirs=() dir pid prefix found=0 tries
  uid=$(id -u "$2")
  if [[ -n $name ]]; then
    [[ -d $area/$name ]] && dirs=("$area/$name")
    prefix=$area/$name/
  else
    for dir in "$area"/*; do
      [[ -d $dir && ${dir##*/} =~ $pattern ]] && dirs+=("$dir")
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
    echo "side cluster: processes $(ours | tr '\n' ' ')still run in $prefix after SIGKILL; remove it once they are gone" >&2
    return 1
  fi
  for dir in "${dirs[@]}"; do
    # The run's socket directory in /tmp, when it is one side_make_run_dir made.
    if [[ -f $dir/socket-dir && $(<"$dir/socket-dir") =~ ^/tmp/kb-side\.[A-Za-z0-9]+$ ]]; then
      rm -rf -- "$(<"$dir/socket-dir")"
    fi
    rm -rf -- "$dir"
    printf 'dir %s\n' "$dir"
  done
  printf 'processes %s\n' "$found"
}

# Runs a function of these scripts where the database lives: as root there
# (where_db), or as the cluster's OS user (where_db_as_owner).
where_db() { # where_db FUNCTION ARGS...
  { declare -f "$1"; printf '%s "$@"\n' "$1"; } | pg bash -s -- "${@:2}"
}
where_db_as_owner() { # where_db_as_owner FUNCTION ARGS...
  { declare -f "$1"; printf '%s "$@"\n' "$1"; } | as_db_owner bash -s -- "${@:2}"
}

# Runs a command in the background and waits for it, so that SIGTERM is handled
# at once (bash runs a trap only after its foreground command has ended). Its
# standard input stays this script's (a background job's would be /dev/null); a
# lock's descriptor (`lock`) is not inherited, or a leftover could hold it.
waited() {
  if [[ -n ${lock:-} ]]; then
    "$@" <&0 {lock}>&- &
  else
    "$@" <&0 &
  fi
  child=$!
  local status=0
  wait "$child" || status=$?
  child=''
  return "$status"
}

# Ends a waited command still running (from an EXIT trap).
stop_child() {
  if [[ -n $child ]]; then
    kill "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
    child=''
  fi
}

# Stops what the script waits on and removes a run's side cluster (side_remove
# with a NAME); safe to call twice, and before the run's directory exists. A
# failure is said, and left to the next run's sweep.
side_remove_run() { # side_remove_run AREA PATTERN NAME
  stop_child
  where_db side_remove "$1" "$KB_PGBACKREST_USER" "$2" "$3" >/dev/null && return 0
  echo "$side_script: could not remove the side cluster in $1/$3; the next run for $KB_STANZA removes it" >&2
  return 1
}

# The first port from a random start in 20000-29999 on which nothing listens
# where the database lives: the side cluster listens on no TCP address, but its
# port also keys its shared memory, which must not be production's.
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
  echo "side cluster: every port in 20000-29999 is taken" >&2
  return 1
}

# The server binaries of the restored cluster's major version: pg_ctl on PATH if
# it is that version, else the Debian or PGDG layout. Prints their directory.
server_bindir() { # server_bindir DATA-DIRECTORY
  local version dir tried=() found tool ok
  version=$(cat "$1/PG_VERSION")
  found=$(command -v pg_ctl || true)
  for dir in ${found:+"${found%/*}"} "/usr/lib/postgresql/$version/bin" "/usr/pgsql-$version/bin"; do
    tried+=("$dir")
    ok=1
    for tool in postgres pg_ctl pg_amcheck psql pg_isready pg_dump; do [[ -x $dir/$tool ]] || ok=''; done
    [[ -n $ok ]] || continue
    [[ $("$dir/postgres" --version) =~ \)\ ([0-9]+) && ${BASH_REMATCH[1]} == "$version" ]] || continue
    echo "$dir"
    return 0
  done
  echo "side cluster: no PostgreSQL $version server binaries (postgres, pg_ctl, pg_amcheck, psql, pg_isready, pg_dump) in ${tried[*]}; install the server package of version $version where the database runs" >&2
  return 1
}

# The run's directory, made by the cluster's OS user (pgBackRest restores as it
# and the side cluster runs as it), with a trust hba for the private socket only.
side_make_run_dir() { # side_make_run_dir RUN: prints the socket directory it made
  local socket
  mkdir -m 700 "$1" "$1/data" "$1/tablespaces"
  printf 'local all all trust\n' >"$1/hba.conf"
  # The socket's path must fit in 107 bytes (sun_path), which a scratch area with
  # a long stanza and name would not: a short private directory in /tmp, named in
  # the run's directory so that side_remove removes it with the run.
  socket=$(mktemp -d /tmp/kb-side.XXXXXXXX)
  printf '%s\n' "$socket" >"$1/socket-dir"
  printf '%s\n' "$socket"
}

# Starts the guard of a run's side cluster and prints its pid. SIGKILL to the
# script's process group (how the SSM agent stops a cancelled or timed-out
# command: its whole process group, amazon-ssm-agent agent/executers
# killProcess) runs no trap, and the side postmaster (pg_ctl starts it in a
# session of its own) would outlive the script. The guard, a subshell in a
# process group of its own (job control on for that one job, in a subshell of
# its own: toggled in this shell, it leaves a later `wait PID` of an already
# reaped child waiting on any child), waits for the script to end however it
# ends, then takes the area's lock (so that a later run of the same name, which
# holds it, never loses its side cluster to the guard) and removes the run's
# side cluster and work directory. It inherits no descriptor the agent reads (its
# output would hold the command open) and not the script's lock (it would keep
# the lock held while it waits). The script kills it once it has cleaned up
# itself.
side_guard() { # side_guard LOCK-FILE AREA PATTERN NAME WORK
  local stat fields
  read -r stat <"/proc/$$/stat"
  read -ra fields <<<"${stat##*) }"
  (
    set -m
    # The script's start time (stat field 22): a reused pid is not the script.
    side_guard_wait "$$" "${fields[19]}" "$@" </dev/null >/dev/null 2>&1 &
    echo "$!"
  )
}
side_guard_wait() { # side_guard_wait PID START-TIME LOCK-FILE AREA PATTERN NAME WORK
  trap - EXIT TERM INT
  if [[ -n ${lock:-} ]]; then exec {lock}>&-; fi
  local stat fields guard_lock
  while read -r stat 2>/dev/null <"/proc/$1/stat"; do
    read -ra fields <<<"${stat##*) }"
    [[ ${fields[19]} == "$2" ]] || break
    sleep 0.5
  done
  exec {guard_lock}>"$3"
  flock "$guard_lock"
  where_db side_remove "$4" "$KB_PGBACKREST_USER" "$5" "$6" >/dev/null || true
  if [[ -n $7 ]]; then rm -rf -- "$7"; fi
}

# Sweeps the area: what an interrupted run left (killed by SIGKILL, a reboot).
# Prints the directories removed, one a line. The area is made if missing: the
# scratch root made here is the cluster's OS user's; one that exists stays as it is.
side_sweep() { # side_sweep ROOT AREA PATTERN
  if ! pg test -d "$1"; then
    pg mkdir -p -m 700 "$1"
    pg chown "$KB_PGBACKREST_USER" "$1"
  fi
  pg mkdir -p -m 700 "$2"
  pg chown "$KB_PGBACKREST_USER" "$2"
  local out what path
  out=$(where_db side_remove "$2" "$KB_PGBACKREST_USER" "$3") || return 1
  while read -r what path; do
    if [[ $what == dir ]]; then printf '%s\n' "$path"; fi
  done <<<"$out"
}

# The production cluster's own server, stopped and started again by a
# whole-cluster recovery (point-in-time-restore.sh) and its clean-up
# (restore-cleanup.sh), both on the host (never in a compose service). The
# options it ran with are its postmaster.opts (the binary, then its arguments,
# as pg_ctl restart reads them), which pgBackRest's --delta restore removes (no
# backup holds it): a copy is kept beside the recovery's lock, so that the server
# starts as it ran after a restore over its data directory, even one cut short.
cluster_opts_file() { printf '%s\n' "$KB_LOCK_DIR/.point-in-time-restore.$KB_STANZA.postmaster.opts"; }
cluster_keep_opts() { # cluster_keep_opts DATA-DIRECTORY
  local opts
  opts=$(cat "$1/postmaster.opts" 2>/dev/null) || return 0
  [[ -z $opts ]] || printf '%s\n' "$opts" >"$(cluster_opts_file)"
}

# Starts the cluster in DATA-DIRECTORY with the options it ran with, its log to
# LOG, and waits at most WAIT seconds for it to accept connections (pg_ctl -w:
# a server in recovery goes on after that). Fails as pg_ctl does.
cluster_start() { # cluster_start BINDIR DATA-DIRECTORY LOG WAIT
  local opts exec_path post_opts start
  opts=$(cat "$2/postmaster.opts" 2>/dev/null) || opts=$(cat "$(cluster_opts_file)" 2>/dev/null) || opts=''
  exec_path=${opts%% \"*}
  post_opts=''
  [[ $opts == *' "'* ]] && post_opts=${opts#* \"} && post_opts="\"$post_opts"
  start=(as_db_owner "$1/pg_ctl" start -D "$2" -w -t "$4" -l "$3")
  if [[ -n $exec_path && -x $exec_path ]]; then start+=(-p "$exec_path"); fi
  if [[ -n $post_opts ]]; then start+=(-o "$post_opts"); fi
  waited "${start[@]}" >/dev/null
}

# Bytes free on the filesystem of a directory where the database lives.
bytes_free() { # bytes_free DIR
  local available
  read -r _ _ _ available _ < <(pg df -P -B1 "$1" | tail -n 1)
  echo "$available"
}

# Production's tablespaces that the backup set restored into DATA-DIRECTORY lacks,
# one line each: OID, a space, then "NAME (oid OID, LOCATION)" for messages.
# pgBackRest restores a link in pg_tblspc for each tablespace of the set, and only
# those (--tablespace-map-all maps only them); a tablespace production has beyond
# them was created after the backup began. Replaying its CREATE TABLESPACE,
# PostgreSQL links pg_tblspc/OID to the location the WAL record names,
# production's own directory, and writes the tablespace's pages there, into
# production's files.
side_new_tablespaces() { # side_new_tablespaces DATA-DIRECTORY
  local restored production oid about
  restored=" $(as_db_owner ls -A "$1/pg_tblspc" | tr '\n' ' ')" || return 1
  production=$(pg_sql postgres <<'SQL'
SELECT oid, regexp_replace(format('%I (oid %s, %s)', spcname, oid, pg_tablespace_location(oid)), '[[:cntrl:]]', '?', 'g')
FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid
SQL
) || return 1
  while IFS='|' read -r oid about; do
    if [[ $oid =~ ^[0-9]+$ && $restored != *" $oid "* ]]; then printf '%s %s\n' "$oid" "$about"; fi
  done <<<"$production"
}

# Makes a side cluster fail, rather than write into production's directory, if
# its recovery replays the creation of one of the tablespaces side_new_tablespaces
# listed (OIDs): a directory pg_tblspc/OID holding one file. Replaying CREATE
# TABLESPACE, PostgreSQL 15 (tablespace.c create_tablespace_directories) removes
# what is at pg_tblspc/OID before it links the location there, and an rmdir of a
# directory that is not empty fails ("could not remove directory"): the startup
# process stops before a page of that tablespace is written (side_start says
# why). A regular file would stop every start (the reset of unlogged relations
# fails on it), a link or an empty directory would be replaced; this directory
# only makes the check at the consistent point, which wants only links in
# pg_tblspc, warn (allow_in_place_tablespaces on, side_start). A tablespace
# created after the replay's end is never replayed, and its trap does nothing.
side_trap_tablespaces() { # side_trap_tablespaces DATA-DIRECTORY OID...
  local oid
  for oid in "${@:2}"; do
    [[ $oid =~ ^[0-9]+$ ]] || return 1
    mkdir -m 700 "$1/pg_tblspc/$oid" || return 1
    echo 'kennel-backup: a tablespace of production the backup set lacks; replaying its creation fails here' >"$1/pg_tblspc/$oid/kennel-backup-trap" || return 1
  done
}

# The side cluster's state, set by side_start and read by side_client: its
# binaries, socket directory, port and the role the tools connect as.
side_bindir=''
side_socket=''
side_port=''
side_user=''

side_log() { # side_log RUN
  echo "$side_script: the side cluster's log ends with:" >&2
  pg tail -n 15 "$1/server.log" >&2 || true
}

# Starts the side cluster restored into RUN/data and waits until it has ended
# recovery and accepts connections (promoted), at most WAIT seconds after it
# reached a consistent state. The restored postgresql.conf (if the cluster keeps
# it in its data directory) and postgresql.auto.conf stay as production has them;
# the command line outranks both, so whatever they say, these hold. No config
# file at all (Debian keeps it in /etc): an empty one. No logical replication
# workers: the restored subscriptions would connect to their publishers and
# consume the slots production's subscriptions read (and hold the database the
# recovery renames).
side_start() { # side_start RUN SOCKET USER WAIT
  local run=$1 data=$1/data wait=$4 options tries
  side_socket=$2
  side_user=$3
  side_bindir=$(where_db server_bindir "$data") || return 1
  side_port=$(where_db free_port) || return 1
  options="-p $side_port -c listen_addresses='' -c unix_socket_directories=$side_socket -c unix_socket_permissions=0700"
  options+=" -c data_directory=$data -c hba_file=$run/hba.conf -c ident_file=$run/hba.conf"
  options+=" -c external_pid_file=$run/postmaster.external.pid -c cluster_name=kb-side"
  options+=" -c archive_mode=off -c archive_command='' -c archive_library=''"
  options+=" -c primary_conninfo='' -c primary_slot_name='' -c synchronous_standby_names='' -c hot_standby=off"
  options+=" -c shared_buffers=128MB -c huge_pages=off -c max_connections=20 -c autovacuum=off -c max_logical_replication_workers=0"
  options+=" -c shared_preload_libraries='' -c logging_collector=off -c ssl=off -c allow_in_place_tablespaces=on"
  as_db_owner touch -a "$data/postgresql.conf"
  # pg_ctl -w returns once recovery has reached a consistent state (with
  # hot_standby off, the postmaster then says "standby"), or fails if it never
  # does; the host command's timeout bounds that wait.
  if ! waited as_db_owner "$side_bindir/pg_ctl" start -w -t 86400 -D "$data" -l "$run/server.log" -o "$options" >/dev/null; then
    side_log "$run"
    side_trapped "$run" ||
      echo "$side_script: the side cluster did not start (its log is above): unless the log names another cause, the backup and its WAL do not recover to a consistent state" >&2
    return 1
  fi
  # Then until it has ended recovery and promoted: pg_isready says 0 once it
  # accepts connections.
  for ((tries = 0; ; tries += 1)); do
    if as_db_owner "$side_bindir/pg_isready" -q -h "$side_socket" -p "$side_port"; then
      side_links_inside "$run"
      return
    fi
    if ! as_db_owner "$side_bindir/pg_ctl" status -D "$data" >/dev/null; then
      side_log "$run"
      side_trapped "$run" || echo "$side_script: the side cluster stopped during recovery (its log is above)" >&2
      return 1
    fi
    if ((tries >= wait * 2)); then
      side_log "$run"
      echo "$side_script: the side cluster did not end recovery and accept connections on its socket in $side_socket within $wait s of reaching a consistent state" >&2
      return 1
    fi
    waited sleep 0.5
  done
}

# Says so when the side cluster stopped on a trap of side_trap_tablespaces: its
# recovery replayed the creation of a tablespace production has and the backup set
# lacks. Fails when its log does not say that.
side_trapped() { # side_trapped RUN
  local oid
  oid=$(pg grep -oE 'could not remove directory "pg_tblspc/[0-9]+"' "$1/server.log" | head -n 1 | grep -oE '[0-9]+') || return 1
  echo "$side_script: the recovery replayed the creation of tablespace oid $oid, which production has and the backup set lacks: PostgreSQL would have linked it to production's own directory and written there, so the side cluster was stopped before it did (production is untouched). Take a full physical backup (the database full backup workflow) and use a set taken after the tablespace was created" >&2
}

# Once the side cluster is up: every link in its pg_tblspc leads into the run's
# directory (a trap of side_trap_tablespaces is a directory, no link). A link elsewhere
# is a tablespace whose creation it replayed into that directory, production's
# perhaps: it is said, and the caller stops the side cluster at once (immediate
# shutdown, no checkpoint writes its pages there).
side_links_inside() { # side_links_inside RUN
  local entry target outside=()
  while IFS= read -r entry; do
    [[ -n $entry ]] || continue
    target=$(as_db_owner readlink "$1/data/pg_tblspc/$entry") || continue
    [[ $target == "$1"/* ]] || outside+=("pg_tblspc/$entry -> $target")
  done < <(as_db_owner ls -A "$1/data/pg_tblspc")
  ((${#outside[@]} == 0)) && return 0
  echo "$side_script: the side cluster's recovery linked ${outside[*]}, outside its own directory $1: a tablespace created after the backup, replayed into a directory production may use; the side cluster is stopped. Check production's tablespace there, and take a full physical backup before recovering beside production again" >&2
  return 1
}

# A client tool on the side cluster: a clean environment (none of production's
# PG* variables), its socket, its port, timeouts of the restored roles and
# databases overruled.
side_client() { # side_client TOOL ARGS...
  local tool=$1
  shift
  as_db_owner env -i PGOPTIONS='-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0 -c default_transaction_read_only=off' \
    "$side_bindir/$tool" -h "$side_socket" -p "$side_port" -U "$side_user" "$@"
}

# A conninfo value: single-quoted, with \ and ' escaped.
conninfo_value() {
  local value=${1//\\/\\\\}
  printf "'%s'" "${value//\'/\\\'}"
}
