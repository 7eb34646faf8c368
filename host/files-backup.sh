#!/bin/bash
# Files backup (configuration, application or static), run on the host by SSM Run
# Command (or the local runner): one tarball of the listed paths, stored relative
# to /, compressed, kept locally and streamed to S3, with a manifest beside it.
#
# Parameters: KB_KIND KB_PATHS KB_EXCLUDES (space-separated) KB_BUCKET
#   KB_ARCHIVE_KEY KB_MANIFEST_KEY KB_LOCAL_DIR KB_FILE_NAME KB_S3_ENDPOINT_URL
#   KB_COMPRESS KB_COMPRESSION KB_TARGET KB_RUN_ID KB_EXECUTION_ID
started_at=$(utc_now)
mkdir -p "$KB_LOCAL_DIR"
local_path="$KB_LOCAL_DIR/$KB_FILE_NAME"
work=$(mktemp -d)
cleanup() {
  local status=$?
  set +e
  if ((status != 0)); then
    rm -f "$local_path"
    echo "files-backup: failed with status $status; nothing was recorded in the catalog" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A missing path is not silently skipped: it is listed in the manifest, and the
# workflow sends a warning naming it.
present=()
missing=()
for path in $KB_PATHS; do
  if [[ -e $path || -L $path ]]; then present+=("${path#/}"); else missing+=("$path"); fi
done
if ((${#present[@]} == 0)); then
  echo "files-backup: none of the $KB_KIND paths exist on this host: $KB_PATHS" >&2
  exit 1
fi
exclude=()
for name in $KB_EXCLUDES; do exclude+=("--exclude=$name"); done

# --index-file takes the verbose listing, one line per entry, away from the data.
tar --create --file=- --directory=/ --verbose --index-file="$work/index" "${exclude[@]}" -- "${present[@]}" \
  2>"$work/tar.err" \
  | $KB_COMPRESS \
  | tee "$local_path" \
  | s3_put "$KB_ARCHIVE_KEY" application/octet-stream \
  || { cat "$work/tar.err" >&2; exit 1; }

size=$(stat -c %s "$local_path")
sha256=$(sha256sum "$local_path" | cut -d' ' -f1)
entries=$(wc -l <"$work/index")
finished_at=$(utc_now)

# shellcheck disable=SC2086 # the lists are space-separated on purpose
{
  printf '{\n  "version": 1,\n  "kind": "%s",\n  "target": "%s",\n' "$KB_KIND" "$KB_TARGET"
  printf '  "runId": "%s",\n  "executionId": "%s",\n' "$KB_RUN_ID" "$KB_EXECUTION_ID"
  printf '  "archive": {"key": "%s", "localPath": "%s", "fileName": "%s", "size": %s, "sha256": "%s", "format": "tar", "compression": "%s"},\n' \
    "$KB_ARCHIVE_KEY" "$local_path" "$KB_FILE_NAME" "$size" "$sha256" "$KB_COMPRESSION"
  printf '  "window": {"since": null, "until": "%s"},\n' "$started_at"
  printf '  "startedAt": "%s",\n  "finishedAt": "%s",\n' "$started_at" "$finished_at"
  printf '  "paths": %s,\n  "missing": %s,\n  "excludes": %s,\n' "$(json_list $KB_PATHS)" "$(json_list "${missing[@]}")" "$(json_list $KB_EXCLUDES)"
  printf '  "entries": %s,\n' "$entries"
  printf '  "verification": {"state": "unverified"}\n}\n'
} >"$work/manifest.json"
s3_put "$KB_MANIFEST_KEY" application/json <"$work/manifest.json"

echo "files-backup: $KB_KIND of $KB_TARGET -> s3://$KB_BUCKET/$KB_ARCHIVE_KEY ($size bytes, $entries entries, ${#missing[@]} missing)"
