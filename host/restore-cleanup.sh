#!/bin/bash
# Cleans up after a restore or a database recovery that failed, was aborted or
# timed out, on the DB host (the application is started again before, by its own
# command): drops the run's staging database if it is still there (never another
# database: its name is the run's own), removes the host's copy of a safety dump
# that was never verified (cut short, or unchecked), drops the roles a restore
# that omits missing roles made to stand in for them (restore-archive.sh; a
# killed run's trap never ran), and reports which of the run's databases exist
# now, so that the alert says what is really left.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_STAGING
#   KB_TARGET_DATABASE KB_REPLACED (empty: the run did not go over a database)
#   KB_SAFETY_COPY (the unverified safety dump's host copy, whole or .partial, or empty)
#   KB_STAND_IN_MARK (the comment that marks the run's stand-in roles)
#
# Prints: KB-RESULT {"stagingDropped": B, "safetyCopyRemoved": B,
#   "standIns": {"dropped": [...], "left": [...]},
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
{ read -r stand_ins && read -r stand_ins_left; } < <(drop_stand_ins "$KB_STAND_IN_MARK")
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
# Every value is true or false, or a JSON list from PostgreSQL: nothing to escape.
printf 'KB-RESULT {"stagingDropped": %s, "safetyCopyRemoved": %s, "standIns": {"dropped": %s, "left": %s}, "exists": {"staging": %s, "target": %s, "replaced": %s}}\n' \
  "$staging_dropped" "$copy_removed" "$stand_ins" "$stand_ins_left" \
  "$(bool exists "$KB_STAGING")" "$(bool exists "$KB_TARGET_DATABASE")" "$(bool exists "$KB_REPLACED")"
