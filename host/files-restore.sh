#!/bin/bash
# Puts a files backup (application, configuration or static) back in place, on
# the host. The tarball's sha256 and its listing are checked before anything is
# touched; the current files are then archived aside, and the tarball extracted
# over them (files added since the backup stay). If the extraction fails, the
# files set aside are put back.
#
# Parameters: KB_ARCHIVE_KEY KB_SHA256 KB_LOCAL_PATH KB_DECOMPRESS KB_COMPRESS
#   KB_ENTRIES (the tarball's entry count in its manifest) KB_PATHS KB_EXCLUDES
#   (space-separated) KB_ASIDE KB_BUCKET KB_S3_ENDPOINT_URL KB_SOURCE (primary|vault:
#   intact_copy)
# It ends by printing where the tarball's bytes came from (the host's copy, the
# backup bucket or the vault):
#   KB-RESULT {"readFrom": "host|primary|vault"}

work=$(work_dir)
extracting=
cleanup() {
  local status=$?
  set +e
  if ((status != 0)) && [[ -n $extracting ]]; then
    echo "files-restore: the extraction failed; putting the files set aside back from $KB_ASIDE" >&2
    $KB_DECOMPRESS <"$KB_ASIDE" | tar -x -C / -f - && echo "files-restore: the previous files are back" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

archive=$(intact_copy "$KB_LOCAL_PATH" "$KB_SHA256" "$KB_ARCHIVE_KEY" "$work")
read_from=$(copy_source "$archive" "$KB_LOCAL_PATH")
$KB_DECOMPRESS <"$archive" | tar -t -f - >"$work/entries"
entries=$(wc -l <"$work/entries")
if ((entries != KB_ENTRIES)); then
  echo "files-restore: $KB_ARCHIVE_KEY lists $entries entries, its manifest says $KB_ENTRIES; nothing was changed" >&2
  exit 1
fi

present=()
for path in $KB_PATHS; do
  if [[ -e $path || -L $path ]]; then present+=("${path#/}"); fi
done
mkdir -p "$(dirname "$KB_ASIDE")"
if ((${#present[@]} > 0)); then
  mapfile -t exclude < <(tar_excludes "$KB_EXCLUDES" "${present[@]}")
  tar -c -C / -f - "${exclude[@]}" -- "${present[@]}" | $KB_COMPRESS >"$KB_ASIDE"
else
  tar -c -f - -T /dev/null | $KB_COMPRESS >"$KB_ASIDE"
fi
echo "files-restore: the current files ($(du -sh "$KB_ASIDE" | cut -f1) compressed) are kept in $KB_ASIDE"

extracting=1
$KB_DECOMPRESS <"$archive" | tar -x -C / -f -
extracting=
echo "files-restore: extracted $entries entries of $KB_ARCHIVE_KEY in place"
printf 'KB-RESULT {"readFrom": "%s"}\n' "$read_from"
