#!/bin/bash
# Physical backup of the target's cluster with pgBackRest, run on the DB host by
# SSM Run Command (or the local runner): a full or incremental backup into the
# stanza's repository, then `verify` of the repository (the checksum of every
# file of every backup and of every WAL segment). It ends by printing one result
# line: pgBackRest's own facts about the new backup (`info --output=json
# --set=<label>`, its fields as pgBackRest names them) and what verify found; the
# workflow's RecordPhysicalBackup stage writes the catalog's record from it:
#   KB-RESULT {"requestedType": "incr", "newestBefore": "<label>"|null, "startedAt": "…", "finishedAt": "…",
#              "backup": {"label": …, "type": …, "prior": …, "reference": …, "error": …,
#                         "timestamp": …, "archive": …, "lsn": …, "info": …},
#              "verify": {"status": "ok|error", "problemCount": N, "problems": ["invalid checksum '…'", …]}}
# Bad files found by verify do not fail this script: the record says which, and
# the stage fails the run naming them. A backup or a verify that cannot run does.
#
# Parameters are prepended as shell assignments by shared/host/shell.ts:
#   KB_TYPE (full|incr) KB_BASE_LABEL (an incremental's base, by the catalog; empty: none) KB_STANZA KB_PGBACKREST_CONFIG KB_PGBACKREST_CONFIG_SHA256
#   KB_PGBACKREST_USER KB_PG_MODE (host|docker) KB_COMPOSE_FILE KB_COMPOSE_SERVICE
# Credentials come from the host's environment (on AWS the instance role), never
# from this text.
started_at=$(utc_now)
work=$(work_dir)
cleanup() {
  local status=$?
  if ((status != 0)); then
    echo "pgbackrest-backup: failed with status $status; nothing was recorded in the catalog" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

pgbr_config_current

# The labels in the repository, oldest first (they sort by time in bytewise order):
# the new backup is the one that was not there before.
labels() {
  local json
  json=$(pgbr info --output=json)
  { grep -oE '"label":"[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?"' <<<"$json" || true; } | cut -d'"' -f4 | LC_ALL=C sort
}
labels >"$work/before"
newest_before=$(tail -n 1 "$work/before")

# pgBackRest builds an incremental on the repository's newest backup. When that is
# not the one the catalog says passed verification and its restore test, a full is
# taken instead: a backup that failed is the base of nothing. With no backup at all,
# pgBackRest takes a full itself. The record says which happened.
type=$KB_TYPE
if [[ $type == incr && -n $newest_before && $newest_before != "$KB_BASE_LABEL" ]]; then
  echo "pgbackrest-backup: the newest backup in the repository, $newest_before, is not the one that passed verification and its restore test (${KB_BASE_LABEL:-none}); taking a full backup instead of an incremental on it" >&2
  type=full
fi
# --start-fast: the backup starts with a checkpoint of its own instead of waiting for
# the next regular one (up to checkpoint_timeout, 5 min by default); its writes come
# at once, not spread.
pgbr backup --type="$type" --start-fast

labels >"$work/after"
label=$(LC_ALL=C comm -13 "$work/before" "$work/after")
if [[ -z $label || $label == *$'\n'* ]]; then
  echo "pgbackrest-backup: expected exactly one new backup in the repository of $KB_STANZA after the backup, found: ${label:-none}" >&2
  exit 1
fi

# Every file of every backup and every WAL segment, read back from the repository
# (common.sh pgbr_verify): bad files do not fail the script, the record says which.
pgbr_verify "$work/verify.log" || {
  echo "pgbackrest-backup: the backup $label is in the repository of $KB_STANZA, unverified" >&2
  exit 1
}
verify_status=$(pgbr_verify_status "$work/verify.log")
pgbr_verify_problems "$work/verify.log" >"$work/problems"
problem_count=$(($(wc -l <"$work/problems")))
problems=()
while IFS= read -r line; do
  # Repository paths and pgBackRest's words: no quote or backslash is needed to tell them.
  line=${line//[\"\\]/}
  problems+=("$line")
done < <(head -n 10 "$work/problems")

pgbr info --output=json --set="$label" >"$work/info.json"
info=$(<"$work/info.json")
# One "name":value of the backup's entry in info's JSON (compact, keys in a fixed
# order); the pattern of each value is strict, so what is printed is JSON as it was.
field() { # field NAME VALUE-PATTERN
  local pattern="\"$1\":($2)"
  if [[ ! $info =~ $pattern ]]; then
    echo "pgbackrest-backup: pgbackrest info --set=$label reported no $1 of the form $2: $(head -c 2000 "$work/info.json")" >&2
    return 1
  fi
  printf '"%s":%s' "$1" "${BASH_REMATCH[1]}"
}
label_re='"[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?"'
segment_re='"[0-9A-F]{24}"'
lsn_re='"[0-9A-F]{1,8}/[0-9A-F]{1,8}"'
fields=(
  label "$label_re"
  type '"(full|incr|diff)"'
  prior "null|$label_re"
  reference "null|\\[($label_re,?)*\\]"
  error 'true|false'
  timestamp '\{"start":[0-9]+,"stop":[0-9]+\}'
  archive "\\{\"start\":$segment_re,\"stop\":$segment_re\\}"
  lsn "\\{\"start\":$lsn_re,\"stop\":$lsn_re\\}"
  info '\{"delta":[0-9]+,"repository":\{"delta":[0-9]+,"size":[0-9]+\},"size":[0-9]+\}'
)
backup=
for ((i = 0; i < ${#fields[@]}; i += 2)); do
  part=$(field "${fields[i]}" "${fields[i + 1]}")
  backup+=${backup:+,}$part
done
backup="{$backup}"
if [[ $backup != *"\"label\":\"$label\""* ]]; then
  echo "pgbackrest-backup: pgbackrest info --set=$label described another backup: $backup" >&2
  exit 1
fi

finished_at=$(utc_now)
newest_json=null
if [[ -n $newest_before ]]; then newest_json="\"$newest_before\""; fi
echo "pgbackrest-backup: $type of stanza $KB_STANZA -> backup $label; verify: $verify_status ($problem_count bad files)"
printf 'KB-RESULT {"requestedType": "%s", "newestBefore": %s, "startedAt": "%s", "finishedAt": "%s", "backup": %s, "verify": {"status": "%s", "problemCount": %s, "problems": %s}}\n' \
  "$KB_TYPE" "$newest_json" "$started_at" "$finished_at" "$backup" "$verify_status" "$problem_count" "$(json_list "${problems[@]}")"
