#!/bin/bash
# Expiry of the target's pgBackRest repository, run on the DB host by SSM Run
# Command (or the local runner) once a backup passed its verification and restore
# test: `pgbackrest expire` with the retention of the rendered conf (a time-based
# point-in-time window: the full backups, and the WAL after the oldest of them,
# that a recovery to any second of the window needs). A dry run comes first: if
# it would remove the backup to keep (the newest full that passed verification
# and its restore test, as the catalog says), nothing is expired and the script
# fails saying so. It ends by printing what was removed:
#   KB-RESULT {"keep": "<label>", "retention": "…", "expired": ["<label>", …],
#              "archive": [{"id": "15-1", "start": "<segment>", "stop": "<segment>"}, …]}
#
# Parameters are prepended as shell assignments by shared/host/shell.ts:
#   KB_KEEP_LABEL KB_KEEP_FULL_COUNT (empty: the conf's retention) KB_STANZA
#   KB_PGBACKREST_CONFIG KB_PGBACKREST_CONFIG_SHA256 KB_PGBACKREST_USER
#   KB_PG_MODE (host|docker) KB_COMPOSE_FILE KB_COMPOSE_SERVICE
work=$(work_dir)
trap 'rm -rf "$work"' EXIT

pgbr_config_current

retention=()
retention_text="the conf's (repo1-retention-full-type=time)"
if [[ -n $KB_KEEP_FULL_COUNT ]]; then
  retention=(--repo1-retention-full-type=count "--repo1-retention-full=$KB_KEEP_FULL_COUNT")
  retention_text="the newest $KB_KEEP_FULL_COUNT full backups, for this run only"
fi

# The backup to keep must be there: a catalog that names a backup the repository
# lost is a problem for a person, not a reason to expire around it.
if ! pgbr info --output=json --set="$KB_KEEP_LABEL" | grep -q "\"label\":\"$KB_KEEP_LABEL\""; then
  echo "pgbackrest-expire: the backup $KB_KEEP_LABEL, which the catalog keeps as the newest full that passed verification and its restore test, is not in the repository of $KB_STANZA; nothing was expired. Compare \`pgbackrest info\` with the catalog's records before expiring anything." >&2
  exit 1
fi

expire() { # expire [--dry-run]: pgBackRest's log of what it removes (or would), on stdout
  pgbr expire "$@" "${retention[@]}" --log-level-console=info --log-level-stderr=off
}
# The backups one expire removes (or would), from its log: "repo1: remove expired backup <label>".
removed() { grep -oE 'remove expired backup [0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?' "$1" | cut -d' ' -f4 || true; }

if ! expire --dry-run >"$work/dry-run.log" 2>&1; then
  sed 's/^/expire --dry-run: /' "$work/dry-run.log" | tail -n 40 >&2
  echo "pgbackrest-expire: the dry run failed; nothing was expired" >&2
  exit 1
fi
if removed "$work/dry-run.log" | grep -qxF "$KB_KEEP_LABEL"; then
  echo "pgbackrest-expire: with $retention_text, expire would remove $KB_KEEP_LABEL, the newest full backup of $KB_STANZA that passed verification and its restore test; nothing was expired. Its newer backups failed verification or their restore test: fix what fails them and take a new full backup, or widen the retention. The dry run would have removed: $(removed "$work/dry-run.log" | tr '\n' ' ')" >&2
  exit 1
fi

if ! expire >"$work/expire.log" 2>&1; then
  sed 's/^/expire: /' "$work/expire.log" | tail -n 40 >&2
  echo "pgbackrest-expire: expire failed part way; what it removed is in its log above and in \`pgbackrest info\`" >&2
  exit 1
fi
mapfile -t expired < <(removed "$work/expire.log")
if printf '%s\n' "${expired[@]}" | grep -qxF "$KB_KEEP_LABEL"; then
  echo "pgbackrest-expire: expire removed $KB_KEEP_LABEL although its dry run would not have (a backup ran in between?): the newest full backup that passed verification and its restore test is gone from $KB_STANZA. Take a full backup now. Expire removed: ${expired[*]}" >&2
  exit 1
fi
archive=()
while read -r id start stop; do
  archive+=("{\"id\": \"$id\", \"start\": \"$start\", \"stop\": \"$stop\"}")
done < <(grep -oE '[0-9]+-[0-9]+ remove archive, start = [0-9A-F]{24}, stop = [0-9A-F]{24}' "$work/expire.log" \
  | sed -E 's/ remove archive, start = / /; s/, stop = / /' || true)
archive_json=$(
  IFS=,
  printf '[%s]' "${archive[*]}"
)

echo "pgbackrest-expire: stanza $KB_STANZA, kept $KB_KEEP_LABEL; expired ${#expired[@]} backups and ${#archive[@]} WAL ranges"
printf 'KB-RESULT {"keep": "%s", "retention": "%s", "expired": %s, "archive": %s}\n' \
  "$KB_KEEP_LABEL" "$retention_text" "$(json_list "${expired[@]}")" "$archive_json"
