#!/bin/bash
# Carries the log tables' rows into a restore's staging database, on the DB host,
# while the application is stopped and before the swap. The daily full leaves
# their rows out (EXCLUDED_TABLES): restored over the database they live in, they
# would otherwise come back empty. Each table's rows are copied from the database
# about to be replaced into the staging database's table of the same name, column
# by column (both must have the same columns, as the backup has them), with the
# values of the sequences its columns own, and its user triggers held off so that
# the rows arrive as they were. A partitioned log table (or one with inheritance
# children) is carried partition by partition, each into its namesake, as the
# replaced database has them (the full leaves out their rows too); a partition
# the backup does not have is refused.
#
# A row whose foreign key names a row the restored data no longer has (a customer
# created after the backup, say) gets what its constraint gives the referrers of
# a deleted row: ON DELETE SET NULL sets the reference to NULL; any other action
# leaves the row out of the restored database. Nothing is lost: the replaced
# database is kept, with every row. Each table's count is checked; the result
# line says, per table, how many rows came over and how many were changed or left
# out. Rows written to the replaced database after this (no application runs)
# stay there.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_STAGING
#   KB_TARGET_DATABASE (the database about to be replaced)
#   KB_CARRY  the tables, a JSON list of {"schema": …, "name": …}, carried in
#             that order (a log table that refers to another comes after it)
#
# Prints: KB-RESULT {"tables": [{"schema", "name", "present", "copied", "rows",
#   "nulled", "leftOut"}, …]}

# One table's part of the list, as psql variables: SQL reads them, never the shell.
table_vars=()
field() { # field JSON-LIST INDEX KEY
  pg_sql postgres -v list="$1" -v i="$2" -v key="$3" <<<"SELECT :'list'::json->:i->>:'key'"
}

# The table and its partitions (or inheritance children), all levels down, in
# DATABASE: a JSON list of {"schema", "name"}, the table first.
members() { # members DATABASE
  pg_sql "$1" "${table_vars[@]}" <<'SQL'
WITH RECURSIVE tree AS (
  SELECT to_regclass(format('%I.%I', :'schema', :'name'))::oid AS oid, 0 AS depth
  UNION SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)
SELECT json_agg(json_build_object('schema', n.nspname, 'name', c.relname) ORDER BY t.depth, n.nspname, c.relname)
FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace
SQL
}

# The table's columns a row is made of (not the generated ones), quoted for SQL,
# and its shape (names and types) to compare; nothing when it does not exist.
columns() { # columns DATABASE
  pg_sql "$1" "${table_vars[@]}" <<'SQL'
SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
FROM pg_attribute a
WHERE a.attrelid = to_regclass(format('%I.%I', :'schema', :'name'))
  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
SQL
}
shape() { # shape DATABASE
  pg_sql "$1" "${table_vars[@]}" <<'SQL'
SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
FROM pg_attribute a
WHERE a.attrelid = to_regclass(format('%I.%I', :'schema', :'name'))
  AND a.attnum > 0 AND NOT a.attisdropped
SQL
}

count=$(pg_sql postgres -v carry="$KB_CARRY" <<<"SELECT json_array_length(:'carry'::json)")
pg_sql "$KB_STAGING" <<<'DROP SCHEMA IF EXISTS kb_carry CASCADE; CREATE SCHEMA kb_carry;'
results=()
different() { # different TABLE
  echo "carry-log-rows: the log table $1 has other columns in $KB_TARGET_DATABASE than in the backup (a migration since the backup?); its rows cannot be carried over as they are. Nothing was replaced: restore into a new database and copy them by hand, or restore a monthly or safety dump, which holds them" >&2
  exit 1
}
for ((i = 0; i < count; i++)); do
  log_schema=$(field "$KB_CARRY" "$i" schema)
  log_name=$(field "$KB_CARRY" "$i" name)
  table_vars=(-v schema="$log_schema" -v name="$log_name")
  cols=$(columns "$KB_STAGING")
  from_cols=$(columns "$KB_TARGET_DATABASE")
  if [[ -z $cols && -z $from_cols ]]; then
    # A configured log table this database does not have: nothing to carry.
    results+=("$(pg_sql postgres "${table_vars[@]}" <<<"SELECT json_build_object('schema', :'schema', 'name', :'name', 'present', false)")")
    continue
  fi
  if [[ -z $cols || -z $from_cols ]]; then different "$log_schema.$log_name"; fi
  list=$(members "$KB_TARGET_DATABASE")
  parts=$(pg_sql postgres -v list="$list" <<<"SELECT json_array_length(:'list'::json)")
  pg_sql "$KB_STAGING" <<<'CREATE TABLE kb_carry.counts (copied bigint, nulled bigint, left_out bigint, rows bigint);'
  # Each partition is checked before any is copied.
  for ((j = 0; j < parts; j++)); do
    schema=$(field "$list" "$j" schema)
    name=$(field "$list" "$j" name)
    table_vars=(-v schema="$schema" -v name="$name")
    if [[ -z $(columns "$KB_STAGING") ]]; then
      echo "carry-log-rows: the log table $log_schema.$log_name has a partition (or child table) $schema.$name in $KB_TARGET_DATABASE that the backup does not have (added since the backup?); its rows cannot be carried over. Nothing was replaced: restore into a new database and copy them by hand, or restore a monthly or safety dump, which holds them" >&2
      exit 1
    fi
    if [[ $(shape "$KB_STAGING") != "$(shape "$KB_TARGET_DATABASE")" ]]; then different "$schema.$name"; fi
  done
  for ((j = 0; j < parts; j++)); do
    schema=$(field "$list" "$j" schema)
    name=$(field "$list" "$j" name)
    table_vars=(-v schema="$schema" -v name="$name")
    cols=$(columns "$KB_STAGING")
    table_vars+=(-v cols="$cols" -v carry="$KB_CARRY")

    pg_sql "$KB_STAGING" "${table_vars[@]}" <<'SQL'
DROP TABLE IF EXISTS kb_carry.rows;
CREATE UNLOGGED TABLE kb_carry.rows AS SELECT :cols FROM ONLY :"schema".:"name" WITH NO DATA;
SQL
    # The rows, straight from the database being replaced into the holding table.
    pg psql -X -q -v ON_ERROR_STOP=1 -d "$KB_TARGET_DATABASE" "${table_vars[@]}" \
      <<<'COPY (SELECT :cols FROM ONLY :"schema".:"name") TO STDOUT' |
      pg psql -X -q -v ON_ERROR_STOP=1 -d "$KB_STAGING" -c 'COPY kb_carry.rows FROM STDIN'

    # The settings carry the names into the DO block, which psql does not interpolate.
    pg_sql "$KB_STAGING" "${table_vars[@]}" <<'SQL'
SELECT set_config('kb.schema', :'schema', false), set_config('kb.name', :'name', false),
       set_config('kb.cols', :'cols', false), set_config('kb.carry', :'carry', false) \g /dev/null
BEGIN;
DO $carry$
DECLARE
  rel regclass := to_regclass(format('%I.%I', current_setting('kb.schema'), current_setting('kb.name')));
  cols text := current_setting('kb.cols');
  fk record;
  dangling text;
  changed bigint;
  copied bigint;
  nulled bigint := 0;
  left_out bigint := 0;
  stored bigint;
  triggers text[];
  modes "char"[];
BEGIN
  EXECUTE format('SELECT count(*) FROM ONLY %s', rel) INTO stored;
  IF stored > 0 THEN
    RAISE EXCEPTION 'the restored % already holds % rows, which the backup should have left out; nothing was replaced', rel, stored;
  END IF;
  SELECT count(*) INTO copied FROM kb_carry.rows;
  -- Foreign keys to the restored tables (not to the table itself, nor to another
  -- carried table): a reference the restored data cannot satisfy is handled as
  -- the constraint handles the referrers of a deleted row.
  FOR fk IN
    SELECT c.confrelid::regclass AS referenced, c.confdeltype,
      (SELECT string_agg(format('r.%I IS NOT NULL', a.attname), ' AND ')
         FROM unnest(c.conkey) k JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k) AS filled,
      (SELECT string_agg(format('f.%I = r.%I', fa.attname, ra.attname), ' AND ')
         FROM unnest(c.conkey, c.confkey) AS k(r, f)
         JOIN pg_attribute ra ON ra.attrelid = c.conrelid AND ra.attnum = k.r
         JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = k.f) AS matches,
      (SELECT string_agg(format('%I = NULL', a.attname), ', ')
         FROM unnest(coalesce(nullif(c.confdelsetcols, '{}'), c.conkey)) k
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k) AS set_null
    FROM pg_constraint c
    WHERE c.conrelid = rel AND c.contype = 'f' AND c.confrelid <> rel
      AND NOT EXISTS (
        SELECT 1 FROM json_array_elements(current_setting('kb.carry')::json) e, pg_partition_ancestors(c.confrelid) a
        WHERE to_regclass(format('%I.%I', e->>'schema', e->>'name')) = a.relid)
  LOOP
    -- MATCH SIMPLE: a reference with a NULL in it refers to nothing.
    dangling := format('%s AND NOT EXISTS (SELECT 1 FROM ONLY %s f WHERE %s)', fk.filled, fk.referenced, fk.matches);
    IF fk.confdeltype = 'n' THEN
      EXECUTE format('UPDATE kb_carry.rows r SET %s WHERE %s', fk.set_null, dangling);
      GET DIAGNOSTICS changed = ROW_COUNT;
      nulled := nulled + changed;
    ELSE
      EXECUTE format('DELETE FROM kb_carry.rows r WHERE %s', dangling);
      GET DIAGNOSTICS changed = ROW_COUNT;
      left_out := left_out + changed;
    END IF;
  END LOOP;
  -- The table's own triggers (a BEFORE INSERT that stamps created_at, say) would
  -- change the rows: held off for the copy, then set back as they were.
  SELECT array_agg(tgname ORDER BY tgname), array_agg(tgenabled ORDER BY tgname) INTO triggers, modes
  FROM pg_trigger WHERE tgrelid = rel AND NOT tgisinternal AND tgenabled IN ('O', 'A');
  FOR i IN 1 .. coalesce(array_length(triggers, 1), 0) LOOP
    EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', rel, triggers[i]);
  END LOOP;
  EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM kb_carry.rows', rel, cols, cols);
  FOR i IN 1 .. coalesce(array_length(triggers, 1), 0) LOOP
    EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER %I', rel, CASE modes[i] WHEN 'A' THEN 'ALWAYS' ELSE '' END, triggers[i]);
  END LOOP;
  EXECUTE format('SELECT count(*) FROM ONLY %s', rel) INTO stored;
  IF stored <> copied - left_out THEN
    RAISE EXCEPTION '% holds % rows after the copy, not the % carried; nothing was replaced', rel, stored, copied - left_out;
  END IF;
  INSERT INTO kb_carry.counts VALUES (copied, nulled, left_out, stored);
END
$carry$;
COMMIT;
SQL

    # The sequences its columns own (an identity, a serial) go on from where the
    # replaced database's are, so that the application's next row gets a new id.
    pg_sql "$KB_TARGET_DATABASE" "${table_vars[@]}" <<'SQL' | pg_sql "$KB_STAGING" >/dev/null
SELECT format('SELECT pg_catalog.setval(%L, %s, true);', format('%I.%I', s.schemaname, s.sequencename), s.last_value)
FROM pg_depend d
JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = to_regclass(format('%I.%I', :'schema', :'name'))
  AND d.deptype IN ('a', 'i') AND s.last_value IS NOT NULL
SQL
  done
  results+=("$(
    pg_sql "$KB_STAGING" -v schema="$log_schema" -v name="$log_name" <<'SQL'
SELECT json_build_object('schema', :'schema', 'name', :'name', 'present', true, 'copied', sum(copied),
                         'rows', sum(rows), 'nulled', sum(nulled), 'leftOut', sum(left_out))
FROM kb_carry.counts;
DROP TABLE kb_carry.counts;
SQL
  )")
  echo "carry-log-rows: ${results[-1]}" >&2
done
pg_sql "$KB_STAGING" <<<'DROP SCHEMA kb_carry CASCADE;'

joined=$(IFS=,; echo "${results[*]}")
printf 'KB-RESULT {"tables": [%s]}\n' "$joined"
