#!/bin/bash
# The preflight of a target's host (the check workflow, and `npm run local -- check`):
# reads what every run needs and changes nothing but a probe object it removes.
# It reports facts; shared/watch/check.ts judges them and words each fix:
#   KB-RESULT {"tools": {"missing": [...]},
#              "databases": [{"name", "reachable", "error"}],
#              "role": {"name", "superuser", "createdb", "createrole", "memberOf": [...],
#                       "switchWal", "owners": [{"database", "owner", "member"}]} | null,
#              "settings": [{"name", "setting", "pendingRestart", "pendingSetting" (what a
#                           restart would make it; null if unknown or none waits)}],
#              "pgbackrest": {"config": "current"|"missing"|"differs", "check": "passed"|"failed"|"skipped", "error"} | null,
#              "s3": {"put": "ok"|<error>, "delete": "ok"|<error>|"skipped", "key"},
#              "unlogged": [[database, schema, name, kind]], "unloggedCount": N}
#   (unlogged: with pgBackRest only; common.sh unlogged_sql)
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_TOOLS (one "where name"
#   a line: `pg` a PostgreSQL client where the database lives, `host` a command on the
#   host, `python` a Python 3 module) KB_DATABASES (space-separated) KB_ROLES (the
#   predefined roles to look for, space-separated) KB_SETTINGS (setting names,
#   space-separated; empty without pgBackRest) KB_BUCKET KB_S3_ENDPOINT_URL KB_PROBE_KEY
#   and, for a target with pgBackRest, KB_STANZA KB_PGBACKREST_CONFIG
#   KB_PGBACKREST_CONFIG_SHA256 KB_PGBACKREST_USER (else KB_STANZA is empty).

# --- Tools ---------------------------------------------------------------------------
missing=()
while read -r where name; do
  [[ -z $where ]] && continue
  case $where in
    pg) pg sh -c "command -v $name" >/dev/null 2>&1 || missing+=("$name") ;;
    host) command -v "$name" >/dev/null 2>&1 || missing+=("$name") ;;
    python) python3 -c "import $name" >/dev/null 2>&1 || missing+=("python3-$name") ;;
  esac
done <<<"$KB_TOOLS"
echo "check: tools missing: ${missing[*]:-none}"

# --- Databases, with the host's own role --------------------------------------------
# The first line of psql's error: which host, role or database it could not reach.
first_line() { head -n 1 | cut -c1-300; }
databases=()
reachable=
for database in $KB_DATABASES; do
  if error=$(pg_sql "$database" <<<'SELECT 1' 2>&1 >/dev/null); then
    databases+=("{\"name\": $(json_string "$database"), \"reachable\": true, \"error\": null}")
    reachable=${reachable:-$database}
    # A physical recovery brings them back empty: with pgBackRest, said (not a failure).
    if [[ -n $KB_STANZA ]] && list=$(pg_sql "$database" -v db="$database" <<<"$(unlogged_sql)"); then
      add_unlogged <(printf '%s\n' "$list")
    fi
  else
    databases+=("{\"name\": $(json_string "$database"), \"reachable\": false, \"error\": $(json_string "$(first_line <<<"$error")")}")
  fi
done
echo "check: databases reachable: ${reachable:-none}"

role=null
settings='[]'
if [[ -n $reachable ]]; then
  # What the README's least-privilege role holds (a superuser holds it all).
  role=$(
    pg_sql "$reachable" -v roles="$KB_ROLES" -v databases="$KB_DATABASES" <<'SQL'
SELECT json_build_object(
  'name', rolname,
  'superuser', rolsuper,
  'createdb', rolcreatedb,
  'createrole', rolcreaterole,
  'memberOf', (SELECT coalesce(json_agg(r ORDER BY r), '[]') FROM unnest(string_to_array(:'roles', ' ')) r
               WHERE pg_has_role(current_user, r, 'MEMBER')),
  'switchWal', has_function_privilege('pg_catalog.pg_switch_wal()', 'EXECUTE'),
  -- A restore gives each object to its owner and drops or renames the database: membership of its owner.
  'owners', (SELECT coalesce(json_agg(json_build_object('database', datname, 'owner', pg_get_userbyid(datdba),
                      'member', pg_has_role(current_user, datdba, 'MEMBER')) ORDER BY datname), '[]')
             FROM pg_database WHERE datname = ANY (string_to_array(:'databases', ' ')))
) FROM pg_roles WHERE rolname = current_user;
SQL
  )
  if [[ -n $KB_SETTINGS ]]; then
    settings=$(
      pg_sql "$reachable" -v names="$KB_SETTINGS" <<'SQL'
-- The value a restart would give a setting that waits for one: the last line
-- setting it in the configuration files (ALTER SYSTEM's included), else its
-- built-in default. pg_file_settings is superusers' unless granted: null then.
SELECT CASE WHEN has_table_privilege('pg_catalog.pg_file_settings', 'SELECT')
            THEN 'coalesce((SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name ORDER BY f.seqno DESC LIMIT 1), s.boot_val)'
            ELSE 'NULL' END AS pending \gset
SELECT coalesce(json_agg(json_build_object('name', s.name, 'setting', s.setting, 'pendingRestart', s.pending_restart,
                                           'pendingSetting', CASE WHEN s.pending_restart THEN :pending END) ORDER BY s.name), '[]')
FROM pg_settings s WHERE s.name = ANY (string_to_array(:'names', ' '));
SQL
    )
  fi
fi

# --- pgBackRest ------------------------------------------------------------------------
pgbackrest=null
if [[ -n $KB_STANZA ]]; then
  config=current
  if ! error=$(pgbr_config_current 2>&1); then
    [[ $error == *'there is no'* ]] && config=missing || config=differs
  fi
  check=skipped
  error=
  # `pgbackrest check` switches a WAL segment and waits for it in the repository:
  # archiving proven end to end (pgBackRest's user guide). Only on the conf the
  # project renders, and only when pgBackRest is there to run.
  if [[ $config == current ]] && command -v pgbackrest >/dev/null 2>&1; then
    if output=$(pgbr check 2>&1); then
      check=passed
    else
      check=failed
      # (grep finds nothing in some failures: not this script's failure.)
      error=$(grep -E 'ERROR|WARN' <<<"$output" | tail -n 3 | cut -c1-400) || true
      [[ -z $error ]] && error=$(tail -n 3 <<<"$output" | cut -c1-400)
    fi
  fi
  echo "check: pgbackrest.conf $config, pgbackrest check $check"
  pgbackrest="{\"config\": \"$config\", \"check\": \"$check\", \"error\": $([[ -n $error ]] && json_string "$error" || echo null)}"
fi

# --- S3: a probe object, written as the backups write theirs, then removed ----------
s3_delete() { # s3_delete KEY
  local endpoint=()
  [[ -n ${KB_S3_ENDPOINT_URL:-} ]] && endpoint=(--endpoint-url "$KB_S3_ENDPOINT_URL")
  aws s3api delete-object --bucket "$KB_BUCKET" --key "$1" "${endpoint[@]}" >/dev/null
}
# Two attempts: an endpoint that does not answer is said in seconds, not after the CLI's backoff.
export AWS_MAX_ATTEMPTS=2
put=ok
delete=skipped
if ! error=$(printf 'kennel-backup check %s\n' "$(utc_now)" | s3_put "$KB_PROBE_KEY" text/plain 2>&1); then
  put=$(grep -v '^$' <<<"$error" | first_line) || true
  put=${put:-the upload failed}
elif error=$(s3_delete "$KB_PROBE_KEY" 2>&1); then
  delete=ok
else
  delete=$(grep -v '^$' <<<"$error" | first_line) || true
  delete=${delete:-the delete failed}
fi
echo "check: s3 put $put, delete $delete"

printf 'KB-RESULT {"tools": {"missing": %s}, "databases": [%s], "role": %s, "settings": %s, "pgbackrest": %s, "s3": {"put": %s, "delete": %s, "key": %s}, %s}\n' \
  "$(json_strings "${missing[@]}")" "$(IFS=,; echo "${databases[*]}")" "$role" "$settings" "$pgbackrest" \
  "$(json_string "$put")" "$(json_string "$delete")" "$(json_string "$KB_PROBE_KEY")" "$(unlogged_fields)"
