#!/bin/bash
# Checks, on the host, that the local copy of each kind's newest verified backup
# is there and holds the bytes that were verified in S3. Prints one result line
# for the workflow: KB-RESULT {"missing": [...], "differs": [...], "checked": N}.
#
# Parameters: KB_COPIES (one line per copy: LOCAL-PATH SHA256)

missing=()
differs=()
checked=0
while read -r path sha256; do
  [[ -n $path ]] || continue
  checked=$((checked + 1))
  if [[ ! -f $path ]]; then
    missing+=("$path")
  elif [[ $(sha256sum "$path" | cut -d' ' -f1) != "$sha256" ]]; then
    differs+=("$path")
  fi
done <<<"$KB_COPIES"

echo "check-local-copies: $checked checked, ${#missing[@]} missing, ${#differs[@]} differ"
printf 'KB-RESULT {"missing": %s, "differs": %s, "checked": %s}\n' \
  "$(json_list "${missing[@]}")" "$(json_list "${differs[@]}")" "$checked"
