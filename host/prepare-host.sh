#!/bin/bash
# Prepares a target's host for pgBackRest, idempotently, run by the prepare-host
# workflow (and by the local stack on its own cluster):
#   1. pgbackrest.conf: the one the project renders, written atomically and owned
#      by the cluster's OS user, only when the file differs; its lock and log
#      directories made;
#   2. the PostgreSQL settings pgBackRest needs, each set with ALTER SYSTEM when the
#      running value does not do, then a reload;
#   3. the grants the other host scripts need, for the role they connect as (the
#      host's own environment: PGUSER and the like): pg_monitor, and EXECUTE on
#      pg_switch_wal(); each only when missing;
#   4. when no setting waits for a restart: stanza-create and check.
# A dry run (KB_DRY_RUN=true) changes nothing and says what a run would change.
# It ends with one result line:
#   KB-RESULT {"dryRun": B, "config": {"file", "existed", "state", "changedOptions"}, "createdPaths": [...],
#              "settings": {"changed": [{"name", "from", "to", "restart"}], "awaitingRestart": [...]},
#              "grants": {"role", "granted": [...]},
#              "restartNeeded": B, "stanza": "...", "check": "...", "error": "..."|null}
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_STANZA KB_PGBACKREST_CONFIG
#   KB_PGBACKREST_CONFIG_SHA256 KB_PGBACKREST_USER KB_PGBACKREST_CONF (the file's text; it
#   holds no secret) KB_PGBACKREST_DIRS (lock and log paths) KB_PG_DATA KB_PG_SOCKET
#   KB_PG_PORT KB_PG_USER KB_SETTINGS (JSON: [{name, accepted | min and max, to}]) KB_DRY_RUN
#   KB_DATABASE (the target's database, which the host's role connects to)

# The OS user cannot always enter the directory the command was started in (SSM's own).
cd /

dry_run() { [[ $KB_DRY_RUN == true ]]; }

# psql on the cluster as pgBackRest connects to it: its OS user, through the
# socket, as its role (ALTER SYSTEM needs the superuser pgBackRest is anyway).
cluster_sql() {
  as_db_owner psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$KB_PG_SOCKET" -p "$KB_PG_PORT" -U "$KB_PG_USER" -d postgres "$@"
}

# --- The cluster is the one the target names --------------------------------------
if ! data_directory=$(cluster_sql -c 'SHOW data_directory'); then
  echo "prepare-host: cannot reach PostgreSQL as $KB_PG_USER through the socket in $KB_PG_SOCKET, port $KB_PG_PORT, as the OS user $KB_PGBACKREST_USER (the way pgBackRest will); correct the target's pgbackrest settings (socketPath, port, user, osUser) or the cluster's pg_hba.conf. Nothing was changed." >&2
  exit 1
fi
if [[ $data_directory != "$KB_PG_DATA" ]]; then
  echo "prepare-host: the PostgreSQL on port $KB_PG_PORT keeps its data in $data_directory, but the target's pgbackrest.dataDirectory is $KB_PG_DATA; correct BACKUP_TARGETS so that both name the same cluster. Nothing was changed." >&2
  exit 1
fi

# The role the other host scripts connect as: the host's own environment's, as pg_sql connects.
if ! host_role=$(pg_sql "$KB_DATABASE" <<<'SELECT current_user'); then
  echo "prepare-host: cannot connect to database $KB_DATABASE with the host's own settings (PGHOST, PGUSER, PGPASSWORD or ~/.pgpass in its environment; in docker mode, the service's), which every backup uses; set them on the host. Nothing was changed." >&2
  exit 1
fi

# --- pgbackrest.conf -----------------------------------------------------------------
# The options, one "section/key=value" line each, in a stable order.
conf_options() {
  LC_ALL=C awk '
    /^[[:space:]]*\[.*\][[:space:]]*$/ { gsub(/^[[:space:]]*\[|\][[:space:]]*$/, ""); section = $0; next }
    /^[[:space:]]*[^#;[:space:]][^=]*=/ {
      i = index($0, "="); key = substr($0, 1, i - 1); gsub(/[[:space:]]/, "", key)
      print section "/" key "=" substr($0, i + 1)
    }' | LC_ALL=C sort
}

# Written beside and renamed, so pgBackRest never reads half a file; the directory
# stays readable by the OS user (this shell's umask would make it root's alone).
read -r -d '' write_conf <<'SH' || true
set -eu
umask 022
dir=$(dirname "$1")
mkdir -p "$dir"
tmp=$(mktemp "$dir/.pgbackrest.conf.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat >"$tmp"
chown "$2" "$tmp"
chmod 640 "$tmp"
mv -f "$tmp" "$1"
SH

current_sha=$(pg sha256sum "$KB_PGBACKREST_CONFIG" 2>/dev/null | cut -d' ' -f1) || current_sha=
existed=false
[[ -n $current_sha ]] && existed=true
changed_options=()
if [[ $current_sha == "$KB_PGBACKREST_CONFIG_SHA256" ]]; then
  config_state=unchanged
else
  # Names only, never values: a file edited by hand may hold a secret.
  if [[ $existed == true ]]; then
    mapfile -t changed_options < <(
      LC_ALL=C comm -3 <(printf '%s' "$KB_PGBACKREST_CONF" | conf_options) \
        <(pg cat "$KB_PGBACKREST_CONFIG" | conf_options) |
        sed 's/^\t//' | cut -d= -f1 | LC_ALL=C sort -u
    )
  fi
  if dry_run; then
    config_state=would-write
  else
    printf '%s' "$KB_PGBACKREST_CONF" | pg sh -c "$write_conf" sh "$KB_PGBACKREST_CONFIG" "$KB_PGBACKREST_USER"
    written_sha=$(pg sha256sum "$KB_PGBACKREST_CONFIG" | cut -d' ' -f1)
    if [[ $written_sha != "$KB_PGBACKREST_CONFIG_SHA256" ]]; then
      echo "prepare-host: $KB_PGBACKREST_CONFIG has sha256 $written_sha after writing it, not $KB_PGBACKREST_CONFIG_SHA256; is another process writing it?" >&2
      exit 1
    fi
    config_state=written
    echo "prepare-host: wrote $KB_PGBACKREST_CONFIG (${changed_options[*]:-new file})"
  fi
fi

created_paths=()
for dir in $KB_PGBACKREST_DIRS; do
  pg test -d "$dir" && continue
  created_paths+=("$dir")
  if ! dry_run; then
    # shellcheck disable=SC2016 # expanded by sh, from its arguments
    pg sh -c 'umask 022 && mkdir -p "$1" && chown "$2" "$1"' sh "$dir" "$KB_PGBACKREST_USER"
    echo "prepare-host: created $dir"
  fi
done

# --- PostgreSQL settings -------------------------------------------------------------
# Each needed setting with the cluster's running value (reset_val: the value
# itself, where `setting` shows archive_command as "(disabled)" while archiving
# is off) and its state:
#   ok               the running value does (and no restart would change it);
#   awaiting-restart set already (the last value in the files is ours), waits for a restart;
#   change           ALTER SYSTEM sets it.
# A setting this server does not have (archive_library before 15) is not needed by it.
read -r -d '' judged <<'SQL' || true
WITH needed AS (
  SELECT n.name, s.reset_val AS running, n."to", s.context = 'postmaster' AS restart, s.pending_restart,
         coalesce(n.accepted ? s.reset_val,
                  CASE WHEN s.reset_val ~ '^-?[0-9]+$' THEN s.reset_val::bigint BETWEEN n.min AND n.max END,
                  false) AS acceptable,
         f.setting IS NOT DISTINCT FROM n."to" AS configured
  FROM jsonb_to_recordset(:'settings'::jsonb) AS n(name text, accepted jsonb, min bigint, max bigint, "to" text)
  JOIN pg_settings s USING (name)
  LEFT JOIN LATERAL (
    SELECT f.setting FROM pg_file_settings f WHERE f.name = n.name ORDER BY f.seqno DESC LIMIT 1
  ) f ON true
), judged AS (
  SELECT *, CASE WHEN acceptable AND (NOT pending_restart OR configured) THEN 'ok'
                 WHEN pending_restart AND configured THEN 'awaiting-restart'
                 ELSE 'change' END AS state
  FROM needed
)
SQL

# The report's values: a replaced archive_command is shown, but anything in it
# that looks like a credential is masked (the result goes to the execution history).
evaluation=$(cluster_sql -F $'\t' -v settings="$KB_SETTINGS" <<SQL
$judged
SELECT count(*) FILTER (WHERE state = 'change'),
       coalesce(bool_or(restart) FILTER (WHERE state = 'change'), false)
         OR count(*) FILTER (WHERE state = 'awaiting-restart') > 0,
       json_build_object(
         'changed', coalesce(json_agg(json_build_object(
             'name', name,
             'from', regexp_replace(regexp_replace(running, '(://[^:/@[:space:]]+:)[^@[:space:]]+@', '\1***@', 'g'),
                                    '((pass|secret|token|key)[a-z_]*[[:space:]]*[=:][[:space:]]*)[^[:space:]]+', '\1***', 'gi'),
             'to', "to", 'restart', restart) ORDER BY name) FILTER (WHERE state = 'change'), '[]'),
         'awaitingRestart', coalesce(json_agg(json_build_object('name', name, 'running', running, 'to', "to")
             ORDER BY name) FILTER (WHERE state = 'awaiting-restart'), '[]'))
FROM judged;
SQL
)
IFS=$'\t' read -r change_count restart_needed settings_json <<<"$evaluation"
[[ $restart_needed == t ]] && restart_needed=true || restart_needed=false
if ((change_count > 0)) && ! dry_run; then
  cluster_sql -v settings="$KB_SETTINGS" >/dev/null <<SQL
$judged
SELECT format('ALTER SYSTEM SET %I = %L', name, "to") FROM judged WHERE state = 'change' \gexec
SELECT pg_reload_conf();
SQL
  # The reload is asynchronous: wait until every change is either in effect or
  # waiting for a restart; one that is neither is overridden where ALTER SYSTEM
  # cannot reach (the server's command line).
  for ((attempt = 0; ; attempt++)); do
    unapplied=$(cluster_sql -v changes="$settings_json" <<'SQL'
SELECT string_agg(format('%s (still %s, set in %s)', s.name, s.reset_val, s.source), ', ')
FROM jsonb_to_recordset((:'changes'::jsonb)->'changed') AS c(name text, "to" text)
JOIN pg_settings s USING (name)
WHERE s.reset_val IS DISTINCT FROM c."to" AND NOT s.pending_restart;
SQL
    )
    [[ -z $unapplied ]] && break
    if ((attempt >= 100)); then
      echo "prepare-host: ALTER SYSTEM did not take for $unapplied; remove them from where they are set, then start prepare-host again" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "prepare-host: settings changed: $settings_json"
fi

# --- The host role's grants -----------------------------------------------------------
# WAL runs call pg_switch_wal(), whose EXECUTE PostgreSQL revokes from PUBLIC, and
# list the archive status directory (pg_ls_archive_statusdir: pg_monitor);
# monitoring reads pg_stat_archiver, which pg_monitor lets it see whole. A
# superuser has both already.
needed=$(cluster_sql -v role="$host_role" <<'SQL'
SELECT g FROM pg_roles r, LATERAL (VALUES
  ('pg_monitor', pg_has_role(r.oid, 'pg_monitor', 'MEMBER')),
  ('EXECUTE ON FUNCTION pg_switch_wal()', has_function_privilege(r.oid, 'pg_catalog.pg_switch_wal()', 'EXECUTE'))
) AS needed(g, held)
WHERE r.rolname = :'role' AND NOT held
SQL
)
missing_grants=()
[[ -z $needed ]] || mapfile -t missing_grants <<<"$needed"
if ((${#missing_grants[@]} > 0)) && ! dry_run; then
  for grant in "${missing_grants[@]}"; do
    case $grant in
      pg_monitor) cluster_sql -v role="$host_role" <<<'GRANT pg_monitor TO :"role"' ;;
      'EXECUTE ON FUNCTION pg_switch_wal()')
        cluster_sql -v role="$host_role" <<<'GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO :"role"' ;;
    esac
  done
  echo "prepare-host: granted ${missing_grants[*]} to $host_role"
fi

# --- Stanza and check ----------------------------------------------------------------
stanza=skipped
check=skipped
error=null
if dry_run; then
  # What a run would find: read only (check would switch a WAL segment).
  stanza=unknown
  if [[ $config_state == unchanged ]]; then
    info=$(pgbr info --output=json --log-level-file=off 2>/dev/null) || info=
    # The stanza's own status is the last one printed (each repository has one before it).
    code=$(grep -o '"status":{"code":[0-9]*' <<<"$info" | tail -n 1 | grep -o '[0-9]*$') || code=
    case $code in
      0 | 2) stanza=exists ;; # ok, or no backup yet
      1 | 3) stanza=missing ;;
    esac
  fi
elif [[ $restart_needed == false ]]; then
  # stanza-create on a stanza that exists and matches the cluster succeeds and changes nothing.
  if output=$(pgbr stanza-create 2>&1); then
    stanza=created
    if output=$(pgbr check 2>&1); then check=passed; else check=failed; fi
  else
    stanza=failed
  fi
  if [[ $stanza == failed || $check == failed ]]; then
    printf '%s\n' "$output" >&2
    error=$(json_string "$(tail -n 8 <<<"$output" | cut -c1-300)")
  fi
  echo "prepare-host: stanza $KB_STANZA $stanza, check $check"
else
  echo "prepare-host: restart PostgreSQL, then start prepare-host again (stanza-create and check wait for it)"
fi

printf 'KB-RESULT {"dryRun": %s, "config": {"file": "%s", "existed": %s, "state": "%s", "changedOptions": %s}, "createdPaths": %s, "settings": %s, "grants": {"role": %s, "granted": %s}, "restartNeeded": %s, "stanza": "%s", "check": "%s", "error": %s}\n' \
  "$KB_DRY_RUN" "$KB_PGBACKREST_CONFIG" "$existed" "$config_state" "$(json_strings "${changed_options[@]}")" \
  "$(json_list "${created_paths[@]}")" "$settings_json" "$(json_string "$host_role")" \
  "$(json_strings "${missing_grants[@]}")" "$restart_needed" "$stanza" "$check" "$error"
