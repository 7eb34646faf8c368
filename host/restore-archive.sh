#!/bin/bash
# Restores a dump (a full backup or a safety dump) into a new database, on the
# DB host: the restore test's scratch database, or a restore's staging database.
# The dump is checked against the sha256 that verification recorded before it is
# used; a dump that does not apply completely leaves nothing behind.
#
# The database comes back as it was, not just its tables: the dump's first line
# (database-backup.sh's) holds its properties, from which this script
#   1. creates the roles its objects need that this cluster lacks: NOLOGIN, no
#      password, each with the memberships it had among them (a role that is
#      not a superuser first makes itself a member of them, to hand them their
#      objects);
#   2. creates the database with the same encoding, locale and owner, from
#      template0;
#   3. applies the dump;
#   4. applies its ALTER DATABASE … SET and ALTER ROLE … IN DATABASE … SET
#      settings.
# Asked to omit the missing roles (KB_MISSING_ROLES=omit, pg_restore --no-owner
# for those roles only), it creates none that stays: see step 3b.
# It ends by printing what it did:
#   KB-RESULT {"encoding", "collate", "ctype", "localeProvider", "icuLocale", "owner",
#              "settings": ["name" or "role: name", ...], "createdRoles": [...],
#              "omittedRoles": [...], "omittedOwners": [...], "readFrom": "host|primary|vault"}
# ("owner" is the new database's, the objects of omittedOwners now its; readFrom
# where the dump's bytes came from: the host's copy, the backup bucket or the vault).
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_INTO KB_BUCKET
#   KB_S3_ENDPOINT_URL KB_SOURCE (primary|vault: intact_copy)
#   KB_ARCHIVES     the dump, one line: KEY SHA256 LOCAL-PATH DECOMPRESS-COMMAND
#   KB_ABSENT       a database that must not exist (a restore's final name), or empty
#   KB_MISSING_ROLES  create | omit
#   KB_STAND_IN_MARK  the comment that marks this run's stand-in roles (omit)

work=$(work_dir)
created=
created_roles='[]'
omitted_roles='[]'
cleanup() {
  local status=$?
  set +e
  if ((status != 0)); then
    if [[ -n $created ]]; then pg dropdb --if-exists --force "$KB_INTO"; fi
    if [[ $created_roles != '[]' ]]; then
      pg_sql postgres -v roles="$created_roles" <<'SQL'
SELECT format('DROP ROLE IF EXISTS %I', name) FROM jsonb_array_elements_text(:'roles'::jsonb) name \gexec
SQL
      echo "restore-archive: dropped the roles it had created: $created_roles" >&2
    fi
    if [[ $KB_MISSING_ROLES == omit ]]; then
      local dropped='[]' left='[]'
      { read -r dropped && read -r left; } < <(drop_stand_ins "$KB_STAND_IN_MARK") \
        || echo "restore-archive: could not look for the stand-ins of the omitted roles; drop the roles commented \"$KB_STAND_IN_MARK\" by hand" >&2
      if [[ $dropped != '[]' ]]; then echo "restore-archive: dropped the stand-ins of the omitted roles: $dropped" >&2; fi
      if [[ $left != '[]' ]]; then
        echo "restore-archive: the stand-ins of the omitted roles $left are used by another database (a restore running at the same time took them for roles of this cluster): drop them once it has ended (DROP ROLE)" >&2
      fi
    fi
  fi
  rm -rf "$work"
}
trap cleanup EXIT

exists() { # exists DATABASE
  [[ -n $(echo "SELECT 1 FROM pg_database WHERE datname = :'name';" | pg_sql postgres -v name="$1") ]]
}
if [[ $KB_MISSING_ROLES != create && $KB_MISSING_ROLES != omit ]]; then
  echo "restore-archive: KB_MISSING_ROLES is \"$KB_MISSING_ROLES\", not create or omit; start the restore again from its workflow" >&2
  exit 2
fi
for name in "$KB_INTO" $KB_ABSENT; do
  if exists "$name"; then
    echo "restore-archive: the database $name already exists; a restore never writes into an existing database. Drop it, or choose another name." >&2
    exit 1
  fi
done

read -r key sha256 local_path decompress <<<"$KB_ARCHIVES"
if [[ -z $decompress || $KB_ARCHIVES == *$'\n'* ]]; then
  echo "restore-archive: expected exactly one dump to restore; start the restore again from its workflow" >&2
  exit 2
fi
archive=$(intact_copy "$local_path" "$sha256" "$key" "$work")
read_from=$(copy_source "$archive" "$local_path")

# The properties line: `-- kennel-backup database-properties <UTF8|SQL_ASCII> <base64 JSON>`
# (the JSON's bytes are UTF-8, or as they are in the database for SQL_ASCII).
# head ends the pipe early: the decompressor's broken pipe is no failure.
first_line=$({ $decompress <"$archive" || true; } | head -n 1)
read -r dashes marker field bytes properties <<<"$first_line"
if [[ "$dashes $marker $field" != '-- kennel-backup database-properties' || ($bytes != UTF8 && $bytes != SQL_ASCII) || -z $properties ]]; then
  echo "restore-archive: $key does not start with the line of the database's properties that database-backup.sh writes, so it is no backup of this project's; restore it by hand with psql" >&2
  exit 2
fi
if [[ $properties =~ [^A-Za-z0-9+/=] ]]; then
  echo "restore-archive: the properties line of $key is not base64; the archive is damaged" >&2
  exit 2
fi
# Every step reads the properties as PostgreSQL's JSON (the host may have no
# jq), from its script: base64 needs no quoting, and an argument (psql -v) is
# limited to 128 KiB. In the new database they are read in its own encoding.
# SQL_ASCII's bytes have no conversion: the roles and the locale, read in the
# postgres database (UTF-8, as a rule), take them as Latin-1, which converts
# any byte (names are ASCII but in odd clusters).
DECODE="SELECT convert_from(decode('$properties', 'base64'), '$bytes')::jsonb AS p \gset"
DECODE_IN_POSTGRES=$DECODE
if [[ $bytes == SQL_ASCII ]]; then DECODE_IN_POSTGRES=${DECODE/SQL_ASCII/LATIN1}; fi

# 1. The roles. A role that is not a superuser can give an object only to a
# role it is a member of: it needs membership of every owner that exists here
# (README: least privilege); an owner it creates, it joins itself.
{
  echo "$DECODE_IN_POSTGRES"
  cat <<'SQL'
SELECT coalesce(json_agg(r->>'name' ORDER BY r->>'name'), '[]') AS missing
FROM jsonb_array_elements(:'p'::jsonb->'roles') r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r->>'name') \gset
SELECT coalesce(string_agg(format('GRANT %I TO %I;', o.rolname, current_user), ' ' ORDER BY o.rolname)
                  FILTER (WHERE NOT o.rolsuper), '') AS lacking,
       coalesce(string_agg(o.rolname, ', ' ORDER BY o.rolname) FILTER (WHERE o.rolsuper), '') AS superusers
FROM jsonb_array_elements(:'p'::jsonb->'roles') r JOIN pg_roles o ON o.rolname = r->>'name'
WHERE (r->>'owns')::boolean AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
  AND NOT pg_has_role(current_user, o.oid, 'MEMBER') \gset
\echo :missing
\echo :lacking
\echo :superusers
SQL
} | pg_sql postgres >"$work/roles"
{ read -r missing_roles && read -r lacking && read -r superusers; } <"$work/roles"
if [[ -n $superusers ]]; then
  echo "restore-archive: the database or some of its objects belong to the superuser $superusers, which only a superuser can give them to; restore it connected as a superuser, or first give them to a role of the application (REASSIGN OWNED BY … TO …, ALTER DATABASE … OWNER TO …) and take a new backup. Nothing was changed." >&2
  exit 1
fi
if [[ -n $lacking ]]; then
  echo "restore-archive: the role this host connects as is not a superuser, and not a member of every role that owns the database's objects, so it cannot give them their objects; as a superuser, run: $lacking (README: least privilege). Nothing was changed." >&2
  exit 1
fi
if [[ $missing_roles != '[]' && $KB_MISSING_ROLES == omit ]]; then
  # Omitted, they still have to exist while the dump is applied: a plain dump
  # names them in ALTER … OWNER TO and GRANT statements that psql runs as they
  # are (no line of a dump is rewritten: a COPY row or a function body can read
  # like one). So each is made as a stand-in, NOLOGIN and marked with this run's
  # comment, all in one transaction, and given up in step 3b. A role that is not
  # a superuser joins them all: REASSIGN OWNED and DROP OWNED need membership.
  omitted_roles=$missing_roles
  pg_sql postgres -v missing="$missing_roles" -v mark="$KB_STAND_IN_MARK" <<'SQL'
BEGIN;
SELECT format('CREATE ROLE %I NOLOGIN', name), format('COMMENT ON ROLE %I IS %L', name, :'mark'),
       CASE WHEN NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN format('GRANT %I TO %I', name, current_user) END
FROM jsonb_array_elements_text(:'missing'::jsonb) name \gexec
COMMIT;
SQL
  echo "restore-archive: the roles $missing_roles are missing here and are omitted: none of them will stay"
elif [[ $missing_roles != '[]' ]]; then
  created_roles=$missing_roles
  {
    echo "$DECODE_IN_POSTGRES"
    cat <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN %s', r->>'name', CASE WHEN (r->>'inherit')::boolean THEN 'INHERIT' ELSE 'NOINHERIT' END)
FROM jsonb_array_elements(:'p'::jsonb->'roles') r WHERE :'missing'::jsonb ? (r->>'name') \gexec
-- The memberships among the database's roles that a created role takes part in.
SELECT format('GRANT %I TO %I', g, r->>'name')
FROM jsonb_array_elements(:'p'::jsonb->'roles') r CROSS JOIN jsonb_array_elements_text(r->'memberOf') g
WHERE :'missing'::jsonb ? (r->>'name') OR :'missing'::jsonb ? g \gexec
SELECT format('GRANT %I TO %I', r->>'name', current_user)
FROM jsonb_array_elements(:'p'::jsonb->'roles') r
WHERE :'missing'::jsonb ? (r->>'name') AND (r->>'owns')::boolean
  AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \gexec
SQL
  } | pg_sql postgres -v missing="$missing_roles"
  echo "restore-archive: created the roles $missing_roles (NOLOGIN, no password)"
fi

# 2. The database, with the encoding and locale it had (template0: any other
# template has its own), and its owner from the start, as pg_dump --create
# gives it: its public schema is the owner's (pg_database_owner), and a role
# that is not a superuser can give a table only to an owner with CREATE on its
# schema. A server before 15 has only the libc provider.
{
  echo "$DECODE_IN_POSTGRES"
  cat <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I TEMPLATE template0 ENCODING %L LC_COLLATE %L LC_CTYPE %L', :'into',
         p->>'owner', p->>'encoding', p->>'collate', p->>'ctype')
       || CASE WHEN current_setting('server_version_num')::int < 150000 THEN ''
               WHEN p->>'localeProvider' = 'icu' THEN format(' LOCALE_PROVIDER icu ICU_LOCALE %L', p->>'icuLocale')
               ELSE ' LOCALE_PROVIDER libc' END
FROM (SELECT :'p'::jsonb AS p) properties \gexec
SQL
} | pg_sql postgres -v into="$KB_INTO"
created=1

# 3. Not in one transaction: it would hold a lock on every table and index it
# creates until its end, and the lock table (max_locks_per_transaction, 64 by
# default, times the connections) runs out at a few thousand tables. The
# database is new, so a dump that does not apply completely is dropped whole
# instead: psql stops at the first error and the EXIT trap drops the database.
# For the same reason no statement waits for its commit to reach the disk.
$decompress <"$archive" \
  | pg psql -X -q -v ON_ERROR_STOP=1 -c 'SET synchronous_commit = off' -f - -d "$KB_INTO" >/dev/null

# 3b. The omitted roles given up, in the new database only. Their objects go to
# its owner: the dump's if this cluster has it, else the role this host
# connects as (the new database then becomes its), as pg_restore --no-owner
# gives them; roles that exist keep what they own. Then DROP OWNED takes the
# grants to them, their default privileges and their places in policies, and
# they are dropped. In this order because:
# - the database first: its owner becomes pg_database_owner, which owns the
#   public schema, and schemas next, as a role that is not a superuser can give
#   an object only to an owner with CREATE on its schema;
# - tables, views and sequences one statement (one transaction) each: REASSIGN
#   OWNED would lock each with its indexes in one transaction, and run out of
#   lock slots at a few thousand tables (as --single-transaction did). A
#   sequence of a serial or identity column goes with its table;
# - REASSIGN OWNED, for the rest (functions, types, large objects …), also gives
#   away the shared objects the roles own, in any database: a stand-in used
#   anywhere but here (another run took it for a role of the cluster) stops
#   everything first, nothing given away;
# - DROP OWNED one role at a time: naming the owner of a default privilege and
#   its grantee in one statement fails ("could not find tuple for default ACL",
#   PostgreSQL 15).
# REASSIGN, DROP OWNED and DROP ROLE are one transaction: after it no stand-in
# is left, or everything is as before and the EXIT trap drops it all.
if [[ $omitted_roles != '[]' ]]; then
  {
    echo "$DECODE"
    cat <<'SQL'
SELECT CASE WHEN :'omitted'::jsonb ? (:'p'::jsonb->>'owner') THEN current_user::text ELSE :'p'::jsonb->>'owner' END AS owner \gset
SELECT format('ALTER DATABASE %I OWNER TO %I', datname, :'owner') FROM pg_database
WHERE datname = current_database() AND :'omitted'::jsonb ? pg_get_userbyid(datdba) \gexec
SELECT format('ALTER SCHEMA %I OWNER TO %I', nspname, :'owner') FROM pg_namespace
WHERE :'omitted'::jsonb ? pg_get_userbyid(nspowner) ORDER BY nspname \gexec
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, :'owner')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE :'omitted'::jsonb ? pg_get_userbyid(c.relowner) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND NOT (c.relkind = 'S' AND EXISTS (
    SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
ORDER BY c.oid \gexec
BEGIN;
SET LOCAL kb.omitted TO :'omitted';
DO $$
DECLARE elsewhere text;
BEGIN
  SELECT string_agg(DISTINCT format('%I (%s)', r.rolname, CASE s.dbid WHEN 0 THEN pg_describe_object(s.classid, s.objid, 0)
                                                         ELSE 'objects in database ' || d.datname END), ', ')
  INTO elsewhere
  FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid LEFT JOIN pg_database d ON d.oid = s.dbid
  WHERE s.refclassid = 'pg_authid'::regclass AND current_setting('kb.omitted')::jsonb ? r.rolname
    AND s.dbid <> (SELECT oid FROM pg_database WHERE datname = current_database());
  IF elsewhere IS NOT NULL THEN
    RAISE EXCEPTION 'the stand-ins of the omitted roles are used outside the restored database: %; a restore running at the same time took them for roles of this cluster. Restore again once it has ended.', elsewhere;
  END IF;
END $$;
SELECT format('REASSIGN OWNED BY %s TO %I', string_agg(quote_ident(name), ', '), :'owner')
FROM jsonb_array_elements_text(:'omitted'::jsonb) name \gexec
SELECT format('DROP OWNED BY %I', name) FROM jsonb_array_elements_text(:'omitted'::jsonb) name \gexec
SELECT format('DROP ROLE %I', name) FROM jsonb_array_elements_text(:'omitted'::jsonb) name \gexec
COMMIT;
SQL
  } | pg_sql "$KB_INTO" -v omitted="$omitted_roles" >/dev/null
  echo "restore-archive: the objects of the omitted roles $omitted_roles are the new database's owner's; their grants are left out and none of them is left"
fi

# 4. The settings, once the data is in (a setting applies to later sessions
# only). A list setting (search_path) is kept as PostgreSQL wrote it, a list of
# quoted identifiers; any other is one literal, as pg_dump writes them. A role's
# settings need CREATEROLE, the database's its owner (or a member of it).
{
  echo "$DECODE"
  cat <<'SQL'
WITH settings AS (
  SELECT s->>'role' AS role, split_part(s->>'setting', '=', 1) AS name,
         substr(s->>'setting', strpos(s->>'setting', '=') + 1) AS value, n
  FROM jsonb_array_elements(:'p'::jsonb->'settings') WITH ORDINALITY AS settings (s, n)
  WHERE NOT :'omitted'::jsonb ? coalesce(s->>'role', '')),
listed AS (
  SELECT *, lower(name) IN ('search_path', 'temp_tablespaces', 'local_preload_libraries', 'session_preload_libraries',
                            'shared_preload_libraries', 'unix_socket_directories') AS list
  FROM settings)
SELECT CASE WHEN role IS NULL THEN format('ALTER DATABASE %I', current_database())
            ELSE format('ALTER ROLE %I IN DATABASE %I', role, current_database()) END
       || format(' SET %I TO ', name)
       || CASE WHEN list AND value = '""' THEN ''''''
               WHEN list AND value ~ '^\s*("([^"]|"")+"|[^",\s]+)(\s*,\s*("([^"]|"")+"|[^",\s]+))*\s*$' THEN value
               ELSE quote_literal(value) END
FROM listed ORDER BY n \gexec
SELECT json_build_object(
  'encoding', p->'encoding', 'collate', p->'collate', 'ctype', p->'ctype',
  'localeProvider', p->'localeProvider', 'icuLocale', p->'icuLocale', 'owner', pg_get_userbyid(d.datdba),
  'settings', (SELECT coalesce(json_agg(coalesce((s->>'role') || ': ', '') || split_part(s->>'setting', '=', 1)), '[]')
               FROM jsonb_array_elements(p->'settings') s WHERE NOT :'omitted'::jsonb ? coalesce(s->>'role', '')),
  'readFrom', :'read_from',
  'createdRoles', :'created'::jsonb,
  'omittedRoles', :'omitted'::jsonb,
  'omittedOwners', (SELECT coalesce(json_agg(r->>'name' ORDER BY r->>'name'), '[]') FROM jsonb_array_elements(p->'roles') r
                    WHERE (r->>'owns')::boolean AND :'omitted'::jsonb ? (r->>'name')))
FROM (SELECT :'p'::jsonb AS p) properties, pg_database d WHERE d.datname = current_database()
SQL
} | pg_sql "$KB_INTO" -v created="$created_roles" -v omitted="$omitted_roles" -v read_from="$read_from" >"$work/result"
echo "restore-archive: restored $(basename "$archive") into $KB_INTO"
printf 'KB-RESULT %s\n' "$(cat "$work/result")"
