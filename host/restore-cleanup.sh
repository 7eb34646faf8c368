#!/bin/bash
# Cleans up after a restore or a database recovery that failed, was aborted or
# timed out, on the DB host (the application is started again before, by its own
# command). The run's host commands have ended, killed if need be (SIGKILL runs
# no trap), so what they would have removed on their way out is removed here:
#   - its staging database, if it is still there (never another database: its
#     name is the run's own);
#   - the host's copy of a safety dump that was never verified (cut short, or
#     unchecked);
#   - the roles a restore that omits missing roles made to stand in for them
#     (restore-archive.sh), once the staging database that holds their objects
#     is gone;
#   - its work directories (work_dir in common.sh, named after the run and its
#     safety dump's run);
#   - a point-in-time recovery's side cluster (host/side-cluster.sh): its
#     postgres stopped, its scratch and socket directories removed, taking the
#     recoveries' lock as its guard and the next recovery's sweep do;
#   - a whole-cluster recovery: PostgreSQL started again where its data directory
#     is whole (stopped for the recovery, or restored and waiting to recover),
#     never where pgBackRest's restore over it was cut short (pg_control is gone
#     then: PostgreSQL could not start, and must not).
# Then it reports what exists now, so that the alert says what is really left.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_STAGING (empty: none)
#   KB_TARGET_DATABASE (empty: none) KB_REPLACED (empty: the run did not go over a database)
#   KB_SAFETY_COPY (the unverified safety dump's host copy, whole or .partial, or empty)
#   KB_STAND_IN_MARK (the comment that marks the run's stand-in roles; empty: none)
#   KB_RUN (the run's id) KB_SAFETY_RUN (its safety dump's run id, or empty)
#   KB_RECOVERY (empty: a restore; database: a point-in-time recovery through a
#   side cluster; cluster: a whole-cluster recovery), and for a recovery
#   KB_STANZA KB_LOCK_DIR KB_PGBACKREST_USER; scope database: KB_SCRATCH_ROOT;
#   scope cluster: KB_PG_DATA (the cluster's data directory) KB_PG_LOG (the run's
#   server log)
#
# Prints: KB-RESULT {"stagingDropped": B, "safetyCopyRemoved": B,
#   "standIns": {"dropped": [...], "left": [...]}, "workRemoved": N,
#   "sideCluster": null | {"removed": B, "exists": B},
#   "cluster": null | {"state": "running" | "recovering" | "cut-short" | "stopped",
#     "started": B, "restored": B, "timeline": N | null},
#   "exists": {"staging": B, "target": B, "replaced": B}}

exists() { # exists DATABASE
  [[ -n $1 && -n $(pg_sql postgres -v name="$1" <<<"SELECT 1 FROM pg_database WHERE datname = :'name'") ]]
}
bool() { if "$@"; then echo true; else echo false; fi; }

staging_dropped=false
if exists "$KB_STAGING"; then
  # A session left in it by the stopped run (a restore's psql) is ended.
  pg dropdb --if-exists --force "$KB_STAGING"
  staging_dropped=true
  echo "restore-cleanup: dropped the staging database $KB_STAGING"
fi
# Once the staging database, which holds their objects, is gone.
stand_ins='[]' stand_ins_left='[]'
if [[ -n $KB_STAND_IN_MARK ]]; then
  { read -r stand_ins && read -r stand_ins_left; } < <(drop_stand_ins "$KB_STAND_IN_MARK")
fi
if [[ $stand_ins != '[]' ]]; then echo "restore-cleanup: dropped the roles $stand_ins, made to stand in for omitted roles"; fi
copy_removed=false
# The copy a dump cut short is still its .partial (database-backup.sh).
for copy in ${KB_SAFETY_COPY:+"$KB_SAFETY_COPY" "$KB_SAFETY_COPY.partial"}; do
  if [[ -e $copy ]]; then
    rm -f -- "$copy"
    copy_removed=true
    echo "restore-cleanup: removed the unverified safety dump $copy"
  fi
done

work_removed=0
for run_id in "$KB_RUN" ${KB_SAFETY_RUN:+"$KB_SAFETY_RUN"}; do
  while read -r dir; do
    [[ -n $dir ]] || continue
    rm -rf -- "$dir"
    work_removed=$((work_removed + 1))
    echo "restore-cleanup: removed the work directory $dir"
  done < <(work_dirs_of "$run_id")
done

side=null
if [[ $KB_RECOVERY == database ]]; then
  area=$(side_area point-in-time-restore "$KB_SCRATCH_ROOT" "$KB_STANZA")
  removed=false
  # Its guard, or a later recovery's sweep, may be removing it now: one at a
  # time. A recovery that holds the lock longer swept the area when it began.
  exec {lock}>"$(side_lock_file point-in-time-restore "$KB_LOCK_DIR" "$KB_STANZA")"
  if flock -w 120 "$lock"; then
    out=$(where_db side_remove "$area" "$KB_PGBACKREST_USER" "$RUN_PATTERN" "$KB_RUN") ||
      echo "restore-cleanup: could not remove the side cluster in $area/$KB_RUN (above)" >&2
    if [[ $out == *"dir $area/$KB_RUN"* ]]; then
      removed=true
      echo "restore-cleanup: stopped and removed the side cluster $area/$KB_RUN (${out##*processes } of its processes were running)"
    fi
    flock -u "$lock"
  fi
  side=$(printf '{"removed": %s, "exists": %s}' "$removed" "$(bool pg test -e "$area/$KB_RUN")")
fi

cluster=null
if [[ $KB_RECOVERY == cluster ]]; then
  bindir=$(where_db server_bindir "$KB_PG_DATA") || exit 1
  running() { as_db_owner "$bindir/pg_ctl" status -D "$KB_PG_DATA" >/dev/null; }
  log=$KB_PG_LOG
  # The run restored the data directory when it started the server on it (its
  # log), or when the restore ended and the server has yet to recover.
  restored=false
  if [[ -e $log || -e $KB_PG_DATA/recovery.signal ]]; then restored=true; fi
  # A server the run was stopping goes on shutting down when its pg_ctl stop is
  # killed (the status line of postmaster.pid says so): seen to its end first.
  for ((tries = 0; tries < 600; tries += 1)); do
    [[ $(sed -n 8p "$KB_PG_DATA/postmaster.pid" 2>/dev/null) == stopping* ]] || break
    sleep 1
  done
  started=false
  if running; then
    :
  elif [[ ! -e $KB_PG_DATA/global/pg_control ]]; then
    echo "restore-cleanup: PostgreSQL is stopped and $KB_PG_DATA has no global/pg_control: the restore over it was cut short; it is not started" >&2
  # A server in recovery goes on after the wait: it is running then.
  elif cluster_start "$bindir" "$KB_PG_DATA" "$log" 120 || running; then
    started=true
    echo "restore-cleanup: started PostgreSQL again ($KB_PG_DATA)"
  else
    pg tail -n 15 "$log" >&2 || true
    echo "restore-cleanup: PostgreSQL did not start (its log is above)" >&2
  fi
  state=stopped timeline=null
  if running; then
    state=running
    case $(pg_sql postgres <<<'SELECT pg_is_in_recovery()' 2>/dev/null) in
      f) timeline=$(pg_sql postgres <<<'SELECT timeline_id FROM pg_control_checkpoint()') || timeline=null ;;
      # In recovery, or replaying towards a consistent state and not answering yet.
      t) state=recovering ;;
      *) if [[ -e $KB_PG_DATA/recovery.signal ]]; then state=recovering; fi ;;
    esac
  elif [[ ! -e $KB_PG_DATA/global/pg_control ]]; then
    state=cut-short
  fi
  cluster=$(printf '{"state": "%s", "started": %s, "restored": %s, "timeline": %s}' "$state" "$started" "$restored" "${timeline:-null}")
fi

# Every value is a boolean, a number, null, one of the words above or a JSON list from PostgreSQL: nothing to escape.
printf 'KB-RESULT {"stagingDropped": %s, "safetyCopyRemoved": %s, "standIns": {"dropped": %s, "left": %s}, "workRemoved": %s, "sideCluster": %s, "cluster": %s, "exists": {"staging": %s, "target": %s, "replaced": %s}}\n' \
  "$staging_dropped" "$copy_removed" "$stand_ins" "$stand_ins_left" "$work_removed" "$side" "$cluster" \
  "$(bool exists "$KB_STAGING")" "$(bool exists "$KB_TARGET_DATABASE")" "$(bool exists "$KB_REPLACED")"
