# shellcheck shell=bash
# Shared by every host script; shared/host/shell.ts renders it between the parameters
# and the script's own body.
set -euo pipefail
umask 077
# Stopped by a timeout or Ctrl-C, a script exits with the signal's status, so its
# EXIT trap cleans up as after any failure (untrapped, bash runs it with $? = 0).
trap 'exit 143' TERM
trap 'exit 130' INT

# Run a PostgreSQL client tool where the database lives.
pg() {
  if [[ $KB_PG_MODE == docker ]]; then
    docker compose -f "$KB_COMPOSE_FILE" exec -T "$KB_COMPOSE_SERVICE" "$@"
  else
    "$@"
  fi
}

# Uploads a stream as it comes, creating KEY and never replacing it: every
# request that makes the object carries If-None-Match: *, so S3 refuses to write
# over one already there (and the bucket policy refuses the DB host any upload
# without it). One python3 process with boto3 (host/s3-put.py, rendered into the
# script as S3_PUT_PY by shared/host/shell.ts) sends it as one PutObject or a
# multipart upload of parts of 8 MiB, doubled until 10,000 parts (S3's most)
# hold EXPECTED-BYTES, an upper bound, when given. The object is created only
# if each STATUS-FILE (written by `stage` as a stage feeding stdin ends) says 0:
# otherwise, as when S3 refuses it, the upload is aborted, says so, and writes
# nothing. Without them, the end of stdin completes the upload.
s3_put() { # s3_put KEY CONTENT-TYPE [EXPECTED-BYTES [STATUS-FILE...]] < body
  python3 -c "${S3_PUT_PY:?s3_put: the uploader (S3_PUT_PY) is rendered into the uploading scripts only: add this one to UPLOADING_SCRIPTS in shared/host/shell.ts}" "$KB_BUCKET" "$1" "$2" "${3:-}" "${KB_S3_ENDPOINT_URL:-}" "${@:4}"
}

# Runs one stage of a pipeline that feeds s3_put and writes its exit status to
# STATUS-FILE as it ends: before its output closes, so the file is complete when
# the next stage, and at last the uploader, reads the end of its input. The
# pipeline's end alone cannot tell a whole archive from a dump cut short.
stage() { # stage STATUS-FILE COMMAND [ARG...]
  local status=0
  "${@:2}" || status=$?
  echo "$status" >"$1"
  return "$status"
}

# Fails, saying what to install, unless s3_put can run: a backup checks this
# before it starts, not once its dump is under way.
s3_put_ready() {
  if ! python3 -c 'import importlib.util as u, sys; sys.exit(u.find_spec("boto3") is None)' 2>/dev/null; then
    echo "s3_put: this host's python3 ($(command -v python3 || echo 'not installed')) has no boto3, with which backups are uploaded: install Debian's python3-boto3 (apt-get install python3-boto3) or boto3 from PyPI, then run this again; nothing was written" >&2
    return 1
  fi
}

# Fails, saying what to install, unless the compressor KB_COMPRESS runs is on
# this host's PATH: a backup checks this before it starts, as s3_put_ready.
compress_ready() {
  local program=${KB_COMPRESS%% *}
  if ! command -v "$program" >/dev/null; then
    echo "compressing: $program (from \"$KB_COMPRESS\"), with which backups are compressed, is not on this host's PATH ($PATH): install it (Debian: apt-get install $program), then run this again; nothing was written" >&2
    return 1
  fi
}

# Stores the archive on stdin in one pass: the host's copy at PATH and the object
# KEY in S3 (s3_put; EXPECTED-BYTES as there, or empty); prints its sha256 (hex),
# taken from the same bytes as they pass, so the copy is not read a second time.
# Fails when any of the three fails. The object is created only if the stages
# that fed stdin succeeded, as their STATUS-FILEs (`stage`) say. It runs where
# errexit does not (a pipeline's `|| …`), so it checks each step itself.
# WORK-DIR holds a FIFO.
store_archive() { # store_archive PATH KEY EXPECTED-BYTES WORK-DIR [STATUS-FILE...] < archive > sha256
  local fifo=$4/sha256.fifo sum=$4/sha256.out sum_pid line
  rm -f "$fifo"
  mkfifo "$fifo" || return 1
  # One job in the background (not a pipeline), so that $! is the process to
  # kill should tee never open the FIFO: it would wait there forever.
  sha256_hex <"$fifo" >"$sum" &
  sum_pid=$!
  if ! stage "$4/copy.status" tee "$1" "$fifo" | s3_put "$2" application/octet-stream "$3" "${@:5}" "$4/copy.status"; then
    kill "$sum_pid" 2>/dev/null
    wait "$sum_pid" 2>/dev/null
    return 1
  fi
  wait "$sum_pid" || return 1
  read -r line <"$sum" || return 1
  rm -f "$fifo" "$sum"
  printf '%s\n' "$line"
}

# The sha256 (hex) of stdin. openssl's uses the processor's SHA extensions where
# it has them (0.8 ms of CPU a MiB on this project's machine, sha256sum 2.9 ms);
# sha256sum where openssl is not installed.
sha256_hex() { # sha256_hex < bytes
  local line
  if command -v openssl >/dev/null; then
    line=$(openssl dgst -sha256 -r) || return 1
  else
    line=$(sha256sum) || return 1
  fi
  printf '%s\n' "${line%% *}"
}

s3_get() { # s3_get KEY [VERSION-ID] > body: the current version, or the one named
  local endpoint=()
  [[ -n ${KB_S3_ENDPOINT_URL:-} ]] && endpoint=(--endpoint-url "$KB_S3_ENDPOINT_URL")
  if [[ -n ${2:-} ]]; then
    # get-object writes the body to a file and its metadata to stdout: the body to fd 3, our stdout.
    aws s3api get-object --bucket "$KB_BUCKET" --key "$1" --version-id "$2" "${endpoint[@]}" /dev/fd/3 3>&1 >/dev/null
  else
    aws s3 cp "s3://$KB_BUCKET/$1" - "${endpoint[@]}" --only-show-errors
  fi
}

utc_now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }

# A host script's work directory, named after its run (KB_RUN_ID, which
# shared/host/scripts.ts gives every host command), so that one a killed run left
# behind (no trap runs on SIGKILL, how the SSM agent stops a cancelled or timed-out
# command) is removed by that run's clean-up (restore-cleanup.sh), and any is
# found and removed later: host_leftovers, prune-local.sh.
work_dir() {
  local run=''
  if [[ ${KB_RUN_ID:-} =~ $RUN_PATTERN ]]; then run=$KB_RUN_ID.; fi
  mktemp -d "${TMPDIR:-/tmp}/kennel-backup.${run}XXXXXXXX"
}
# The work directories of a run (work_dir), one a line.
work_dirs_of() { # work_dirs_of RUN-ID
  find "${TMPDIR:-/tmp}" -mindepth 1 -maxdepth 1 -type d -name "kennel-backup.$1.*"
}

# Where a stanza's side clusters (host/side-cluster.sh) live under the scratch
# root, and the lock their runs hold, by the script that makes them: the restore
# tests (a directory per backup set), the point-in-time recoveries (a directory
# per run). The locks are on the host, in the target's backupDir.
side_area() { # side_area SCRIPT SCRATCH-ROOT STANZA
  case $1 in
    physical-restore-test) printf '%s\n' "$2/$3" ;;
    point-in-time-restore) printf '%s\n' "$2/point-in-time-$3" ;;
  esac
}
side_lock_file() { # side_lock_file SCRIPT LOCK-DIR STANZA
  printf '%s\n' "$2/.$1.$3.lock"
}
# The names of the directories in each area: a backup set's label, a run's id.
SET_PATTERN='^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$'
RUN_PATTERN='^[0-9]{8}T[0-9]{6}Z_[0-9a-f]{8}$'

# Whether a process holds a lock on FILE (flock): read from /proc/locks, which
# takes no lock itself, so a run starting meanwhile is never refused for it.
lock_held() { # lock_held FILE
  local inode
  inode=$(stat -c %i "$1" 2>/dev/null) || return 1
  grep -qE "^[0-9]+: FLOCK +ADVISORY +(READ|WRITE) +[0-9]+ [0-9a-f]+:[0-9a-f]+:$inode " /proc/locks
}

# What runs that ended without cleaning up left on this host, one per line
# "WHERE NAME BYTES AGE-SECONDS", WHERE being
#   file      a partial archive (*.partial) in the backup directory's archive folders
#   work      a host script's work directory (work_dir)
#   side      a side cluster's directory (a restore test's or a point-in-time
#             recovery's: a copy of the cluster's data, its postgres perhaps still
#             running) while no run holds its area's lock; only with KB_SCRATCH_ROOT
#             and KB_STANZA set (a target with pgBackRest settings)
#   database  a scratch or staging database (kb_restore_test_<run>, kb_restoring_<run>),
#             aged from its run's start in its name (PostgreSQL records no creation time)
# Files are aged by their last write, which no run makes before it starts. Only
# names of the project's own shape are listed, so each is safe in JSON as it is.
host_leftovers() { # host_leftovers BACKUP-DIR [DATABASE-TO-CONNECT-TO]
  local now dirs=() dir path bytes mtime script area pattern listed
  now=$(date +%s)
  for dir in "$1"/configuration "$1"/application "$1"/static "$1"/database; do
    [[ -d $dir ]] && dirs+=("$dir")
  done
  if ((${#dirs[@]} > 0)); then
    while read -r path bytes mtime; do
      if [[ $path =~ ^/[A-Za-z0-9._/-]+\.partial$ ]]; then echo "file $path $bytes $((now - ${mtime%.*}))"; fi
    done < <(find "${dirs[@]}" -maxdepth 3 -type f -name '*.partial' -printf '%p %s %T@\n')
  fi
  while read -r path mtime; do
    # Named after its run, or (made by an older version) not.
    [[ $path =~ /kennel-backup\.([0-9]{8}T[0-9]{6}Z_[0-9a-f]{8}\.)?[A-Za-z0-9]{8}$ ]] || continue
    bytes=$(du -sb "$path" 2>/dev/null | cut -f1) || bytes=0
    echo "work $path ${bytes:-0} $((now - ${mtime%.*}))"
  done < <(find "${TMPDIR:-/tmp}" -mindepth 1 -maxdepth 1 -type d -name 'kennel-backup.*' -printf '%p %T@\n')
  if [[ -n ${KB_SCRATCH_ROOT:-} && -n ${KB_STANZA:-} ]]; then
    for script in physical-restore-test point-in-time-restore; do
      area=$(side_area "$script" "$KB_SCRATCH_ROOT" "$KB_STANZA")
      pattern=$SET_PATTERN
      [[ $script == point-in-time-restore ]] && pattern=$RUN_PATTERN
      # Listed first, the lock looked at after: a run that started before the
      # listing holds it now, and one that starts after is not in the listing.
      listed=$(pg find "$area" -mindepth 1 -maxdepth 1 -type d -printf '%p %T@\n' 2>/dev/null) || listed=''
      [[ -n $listed ]] || continue
      lock_held "$(side_lock_file "$script" "$1" "$KB_STANZA")" && continue
      while read -r path mtime; do
        [[ ${path##*/} =~ $pattern && $path =~ ^/[A-Za-z0-9._/-]+$ ]] || continue
        bytes=$(pg du -sb "$path" 2>/dev/null | cut -f1) || bytes=0
        echo "side $path ${bytes:-0} $((now - ${mtime%.*}))"
      done <<<"$listed"
    done
  fi
  [[ -n ${2:-} ]] || return 0
  pg_sql "$2" -F ' ' <<'SQL' | sed 's/^/database /'
SET TIME ZONE 'UTC';
SELECT datname, pg_database_size(oid),
  floor(extract(epoch FROM now() - to_timestamp(substring(datname FROM '_([0-9]{8}t[0-9]{6})z_'), 'YYYYMMDD"t"HH24MISS')))::bigint
FROM pg_database
WHERE datname ~ '^kb_(restore_test|restoring)_[0-9]{8}t[0-9]{6}z_[0-9a-f]{8}$'
ORDER BY datname;
SQL
}

# Prints the path of an intact copy of an archive: the host's own copy when its
# sha256 is the one verified for the object in S3, otherwise the object fetched
# into DIR (the host then needs read access to the prefix), which must have that
# sha256 too. So a restore uses exactly the bytes stored off-site. A restore from
# the vault (KB_SOURCE=vault, KB_BUCKET the vault) always fetches: that it reads
# the vault is what proves the vault holds the backup. The version fetched is
# the one KB_ARCHIVE_VERSIONS names for KEY (lines "KEY VERSION-ID",
# shared/host/scripts.ts archiveVersionLines): the one its backup wrote, as the
# record of its creation says, so a version put over it later is never used.
intact_copy() { # intact_copy LOCAL-PATH SHA256 KEY DIR
  local path=$1 actual version='' key instead
  if [[ ${KB_SOURCE:-primary} != vault && -f $path && $(sha256_hex <"$path") == "$2" ]]; then
    printf '%s\n' "$path"
    return 0
  fi
  while read -r key version; do
    if [[ $key == "$3" ]]; then break; fi
    version=''
  done <<<"${KB_ARCHIVE_VERSIONS:-}"
  if [[ ${KB_SOURCE:-primary} == vault ]]; then
    echo "restoring from the vault: fetching s3://$KB_BUCKET/$3${version:+ (version $version, the one its backup wrote)}, not the host's copy" >&2
  else
    echo "no intact copy at $1; fetching s3://$KB_BUCKET/$3${version:+ (version $version, the one its backup wrote)}" >&2
  fi
  path=$4/${3##*/}
  s3_get "$3" "$version" >"$path" || return 1
  actual=$(sha256_hex <"$path")
  if [[ $actual != "$2" ]]; then
    if [[ ${KB_SOURCE:-primary} == vault ]]; then
      instead='restore an older backup instead (its run id as "backup"; info lists them)'
    else
      instead='restore the vault'"'"'s copy of it instead (the same input with "source": "vault"), or an older backup (its run id as "backup"; info lists them)'
    fi
    echo "s3://$KB_BUCKET/$3 has sha256 $actual, the manifest says $2: it is not the archive its backup wrote; do not restore from it: $instead" >&2
    return 1
  fi
  printf '%s\n' "$path"
}

# Where intact_copy's copy came from, for the restore's report: host (the host's
# own copy at LOCAL-PATH), primary (the backup bucket) or vault.
copy_source() { # copy_source COPY-PATH LOCAL-PATH
  if [[ $1 == "$2" ]]; then echo host; else echo "${KB_SOURCE:-primary}"; fi
}

# tar's options that leave EXCLUDES (space-separated; shared/core/identifiers.ts
# excludeName) out of a tarball of PATHS (relative to /), one a line: a name
# wherever it occurs (tar's default, unanchored: `node_modules`, `.env*`), and a
# name ending in / as that directory directly under each path only (`ssl/`).
tar_excludes() { # tar_excludes "EXCLUDES" PATH...
  local names=() name path
  # read, not a loop over an unquoted $1: `.env*` is tar's pattern, not the shell's.
  read -r -a names <<<"$1"
  shift
  for name in "${names[@]}"; do
    if [[ $name != */ ]]; then printf '%s\n' "--exclude=$name"; fi
  done
  printf '%s\n' --anchored
  for name in "${names[@]}"; do
    if [[ $name == */ ]]; then
      for path in "$@"; do printf '%s\n' "--exclude=$path/${name%/}"; done
    fi
  done
  printf '%s\n' --no-anchored
}

# psql with the statements on stdin, which can use the -v variables (-c cannot).
pg_sql() { # pg_sql DATABASE [-v name=value ...] < SQL
  local database=$1
  shift
  pg psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$database" "$@"
}

# Drops the roles a restore made to stand in for roles it omits
# (restore-archive.sh), found by their mark (COMMENT ON ROLE), which names the
# run's own database. A role another run took for one of the cluster's and uses
# cannot be dropped. Prints two JSON lists: the roles dropped, those left.
drop_stand_ins() { # drop_stand_ins MARK
  pg_sql postgres -v mark="$1" <<'SQL'
\set ON_ERROR_STOP 0
SELECT coalesce(json_agg(rolname), '[]') AS marked FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = :'mark' \gset
SELECT format('DROP ROLE %I', rolname) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = :'mark' \gexec
SELECT coalesce(json_agg(name ORDER BY name), '[]') FROM jsonb_array_elements_text(:'marked'::jsonb) name
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name);
SELECT coalesce(json_agg(name ORDER BY name), '[]') FROM jsonb_array_elements_text(:'marked'::jsonb) name
WHERE EXISTS (SELECT FROM pg_roles WHERE rolname = name);
SQL
}

# A JSON string of any text: quotes, backslashes and control characters escaped.
json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//[$'\001'-$'\037']/?}
  printf '"%s"' "$s"
}

json_strings() {
  local out='' item
  for item in "$@"; do out+="$(json_string "$item"),"; done
  printf '[%s]' "${out%,}"
}

# A JSON list of strings that passed the project's strict patterns (paths,
# names): they hold no quote or backslash to escape.
json_list() {
  local out='' item
  for item in "$@"; do out+="\"$item\","; done
  printf '[%s]' "${out%,}"
}

# Runs a command as the cluster's OS user (KB_PGBACKREST_USER, who owns the data
# directory and runs archive_command), where the database lives: pgBackRest, and
# a restore test's scratch instance.
as_db_owner() {
  if [[ $KB_PG_MODE == docker ]]; then
    docker compose -f "$KB_COMPOSE_FILE" exec -T -u "$KB_PGBACKREST_USER" "$KB_COMPOSE_SERVICE" "$@"
  elif [[ $(id -un) != "$KB_PGBACKREST_USER" ]]; then
    # The caller's environment goes along (runuser keeps it): a local S3's keys.
    runuser -u "$KB_PGBACKREST_USER" -- "$@"
  else
    "$@"
  fi
}

# pgBackRest on this target's stanza, as the cluster's OS user (it reads the data
# directory, as archive_command does). The scripts that use it take KB_STANZA
# KB_PGBACKREST_CONFIG KB_PGBACKREST_CONFIG_SHA256 KB_PGBACKREST_USER
# (shared/host/pgbackrest-conf.ts pgbackrestParams).
pgbr() {
  as_db_owner pgbackrest "--config=$KB_PGBACKREST_CONFIG" "--stanza=$KB_STANZA" "$@"
}

# Fails unless the host's pgbackrest.conf is the one the project renders for this
# target now: a backup never runs on settings nobody reviewed.
pgbr_config_current() {
  local actual
  actual=$(pg sha256sum "$KB_PGBACKREST_CONFIG" 2>/dev/null | cut -d' ' -f1) || actual=
  [[ $actual == "$KB_PGBACKREST_CONFIG_SHA256" ]] && return 0
  if [[ -z $actual ]]; then
    echo "pgBackRest: there is no $KB_PGBACKREST_CONFIG on this host; start the prepare-host workflow for the target $KB_STANZA, then run this again" >&2
  else
    echo "pgBackRest: $KB_PGBACKREST_CONFIG on this host differs from the configuration rendered for the target $KB_STANZA; start the prepare-host workflow for it (it shows what changes), then run this again" >&2
  fi
  return 1
}

# A text (pgBackRest's JSON, a command's report) as a dollar-quoted SQL literal,
# for statements on psql's stdin: a psql variable travels as one argument, which
# Linux caps at 128 KiB, and `pgbackrest info --output=json` of a long retention
# is larger. PostgreSQL's JSON functions then read it: the host may have no jq.
sql_text() { # sql_text TEXT
  if [[ $1 == *"\$kb_text\$"* ]]; then
    echo "a report to hand to PostgreSQL holds \$kb_text\$, so it cannot be quoted; look at it on the host" >&2
    return 1
  fi
  # shellcheck disable=SC2016 # the dollars are SQL's quote, not the shell's
  printf '$kb_text$%s$kb_text$' "$1"
}

# pgbackrest verify of the stanza's whole repository: every file of every backup
# and every WAL segment read back against the checksum and size recorded when it
# was stored; its report (log lines and the text report) into FILE. pgBackRest
# 2.45's verify exits 0 whatever it finds: its report says "status: error", and
# each bad file has a line of its own (a missing WAL segment only a warning, since
# an expire may have removed it). Fails, showing the log's end, when it cannot run.
pgbr_verify() { # pgbr_verify FILE
  if ! pgbr --log-level-console=info --log-level-stderr=off verify --output=text >"$1" 2>&1; then
    sed 's/^/verify: /' "$1" | tail -n 40 >&2
    echo "pgbackrest verify could not check the repository of $KB_STANZA (its log is above)" >&2
    return 1
  fi
}

# The bad files a verify report names, one a line, in verify's words:
# "invalid checksum '<path>'", or "invalid result <path>: [code] <message>" for a
# file it could not read through (a damaged compressed WAL segment, say).
pgbr_verify_problems() { # pgbr_verify_problems FILE
  { grep -oE "(invalid checksum|invalid size|file missing) '[^']*'|invalid result [^ ]+: .*" "$1" || true; } | cut -c1-300
}

# ok, or error when verify found anything bad.
pgbr_verify_status() { # pgbr_verify_status FILE
  if grep -qx 'status: error' "$1"; then echo error; else echo ok; fi
}

# Prints the query for the databases of a cluster a check can read, by name ("C" order): those that
# allow connections and are valid. A recovery that stops inside a DROP DATABASE
# leaves that database marked invalid (datconnlimit -2, PostgreSQL 15.4 and
# later), and no one can connect to it: DROP DATABASE finishes it. Our own
# restore tests drop scratch databases all day, so a recovery target may well
# fall inside one.
connectable_databases_sql() {
  echo 'SELECT datname FROM pg_database WHERE datallowconn AND datconnlimit <> -2 ORDER BY datname COLLATE "C"'
}
# Those left out as invalid, on one line, for the operator.
invalid_databases_sql() {
  echo "SELECT string_agg(datname, ', ' ORDER BY datname COLLATE \"C\") FROM pg_database WHERE datconnlimit = -2"
}

# The unlogged tables and sequences of one database (psql variable db: the name
# to report), one [DATABASE, SCHEMA, NAME, KIND] JSON line each. Neither the WAL
# nor a pgBackRest backup holds their rows: PostgreSQL resets them empty when
# recovery ends, so a recovered cluster has them empty whatever the target, and
# only the logical dump holds their rows. The side cluster's users name them; check warns of them.
unlogged_sql() {
  cat <<'SQL'
SELECT json_build_array(:'db'::text, n.nspname, c.relname, CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'S')
ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
SQL
}
# Enough to name them on the result line, which stays small.
UNLOGGED_LISTED=50
unlogged_items=()
unlogged_count=0
# Adds a file of unlogged_sql's lines to unlogged_items and unlogged_count.
add_unlogged() { # add_unlogged FILE
  local line
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    unlogged_count=$((unlogged_count + 1))
    if ((${#unlogged_items[@]} < UNLOGGED_LISTED)); then unlogged_items+=("$line"); fi
  done <"$1"
}
# The result line's "unlogged" and "unloggedCount" fields.
unlogged_fields() {
  local IFS=,
  printf '"unlogged": [%s], "unloggedCount": %s' "${unlogged_items[*]}" "$unlogged_count"
}
