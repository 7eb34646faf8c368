#!/bin/bash
# Checks, on the host, that the local copy of each kind's newest verified backup
# is there and holds the bytes that were verified in S3, and lists what runs that
# ended without cleaning up left here (host_leftovers: partial archives, work
# directories, scratch and staging databases; the verification judges their age).
# Prints one result line for the workflow:
#   KB-RESULT {"missing": [...], "differs": [...], "checked": N,
#              "leftovers": [{"where": "file", "name": "…", "bytes": N, "ageSeconds": N}, …], "leftoverCount": N}
# (the first 50 leftovers: the result line stays small).
#
# Parameters: KB_COPIES (one line per copy: LOCAL-PATH SHA256) KB_BACKUP_DIR
#   KB_DATABASE (where to list the cluster's databases from) KB_PG_MODE
#   KB_COMPOSE_FILE KB_COMPOSE_SERVICE

missing=()
differs=()
checked=0
while read -r path sha256; do
  [[ -n $path ]] || continue
  checked=$((checked + 1))
  if [[ ! -f $path ]]; then
    missing+=("$path")
  elif [[ $(sha256_hex <"$path") != "$sha256" ]]; then
    differs+=("$path")
  fi
done <<<"$KB_COPIES"

# Captured first, so that a listing that fails (PostgreSQL unreachable) fails the check, said, not passed over.
listing=$(host_leftovers "$KB_BACKUP_DIR" "$KB_DATABASE")
leftovers=()
count=0
while read -r where name bytes age; do
  [[ -n $where ]] || continue
  count=$((count + 1))
  ((count <= 50)) || continue
  # host_leftovers lists only names of the project's own shape: nothing to escape.
  leftovers+=("{\"where\": \"$where\", \"name\": \"$name\", \"bytes\": $bytes, \"ageSeconds\": $age}")
done <<<"$listing"
leftover_list=$(
  IFS=,
  printf '[%s]' "${leftovers[*]}"
)

echo "check-local-copies: $checked checked, ${#missing[@]} missing, ${#differs[@]} differ, $count leftover(s)"
printf 'KB-RESULT {"missing": %s, "differs": %s, "checked": %s, "leftovers": %s, "leftoverCount": %s}\n' \
  "$(json_list "${missing[@]}")" "$(json_list "${differs[@]}")" "$checked" "$leftover_list" "$count"
