#!/bin/bash
# Runs pgbackrest verify on the target's repository: every file of every backup
# and every WAL segment is read back and checked against the checksum and size
# recorded when it was stored. Prints one result line for the daily verification:
#   KB-RESULT {"status": "ok"|"error", "problems": [...], "problemCount": N, "summary": [...]}
# problems: the first bad files as verify names them ("invalid checksum
# '<backup label>/pg_data/…'"); summary: its own report of what failed.
#
# Parameters: KB_DATABASE (to connect to, for PostgreSQL's JSON functions), and
# pgBackRest's (common.sh pgbr).

pgbr_config_current
report=$(mktemp)
trap 'rm -f "$report"' EXIT

# Missing WAL segments are only warnings there: the WAL continuity check covers those.
pgbr_verify "$report"
problems=$(pgbr_verify_problems "$report" | head -n 20)
count=$(pgbr_verify_problems "$report" | wc -l)
status=$(pgbr_verify_status "$report")
# The report's own lines after "status: error", indented (the log's copy of it is not).
summary=$(awk '/^status: error$/ { on = 1; next } on && /^ / { print; next } { on = 0 }' "$report" | head -n 20 | cut -c1-300)
echo "pgbackrest-verify: status $status, $count bad file(s)"

pg_sql "$KB_DATABASE" -v status="$status" -v count="$count" <<SQL
SELECT 'KB-RESULT ' || json_build_object(
  'status', :'status',
  'problems', (SELECT coalesce(json_agg(line), '[]') FROM regexp_split_to_table($(sql_text "$problems"), E'\n') line WHERE line <> ''),
  'problemCount', :'count'::int,
  'summary', (SELECT coalesce(json_agg(btrim(line)), '[]') FROM regexp_split_to_table($(sql_text "$summary"), E'\n') line WHERE btrim(line) <> '')
);
SQL
