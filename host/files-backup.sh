#!/bin/bash
# Files backup (configuration, application or static), run on the host by SSM Run
# Command (or the local runner): one tarball of the listed paths, stored relative
# to /, compressed, kept locally and streamed to S3. It ends by printing one
# result line of the facts only the host knows; the workflow's VerifyArchive
# stage lists the tarball and writes its manifest:
#   KB-RESULT {"size": N, "sha256": "…", "startedAt": "…", "finishedAt": "…", "entries": N, "missing": [...]}
#
# Parameters: KB_KIND KB_PATHS KB_ROOTS KB_EXCLUDES (space-separated) KB_BUCKET
#   KB_ARCHIVE_KEY KB_LOCAL_DIR KB_LOCAL_PATH KB_S3_ENDPOINT_URL KB_COMPRESS
started_at=$(utc_now)
mkdir -p "$KB_LOCAL_DIR"
local_path=$KB_LOCAL_PATH
# Written beside and renamed once complete: a file at the final name is a whole
# archive, and one a killed run left is a *.partial leftover (host_leftovers).
partial=$local_path.partial
work=$(work_dir)
cleanup() {
  local status=$?
  set +e
  if ((status != 0)); then
    rm -f "$partial" "$local_path"
    echo "files-backup: failed with status $status; nothing was recorded in the catalog" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
s3_put_ready
compress_ready

# The plan named paths under the kind's roots (KB_ROOTS, from config); none may
# lead out of them through a symbolic link on the way (tar opens the path as the
# system resolves it). A path that is itself a link is archived as the link.
roots=()
for root in $KB_ROOTS; do roots+=("$(realpath -m -- "$root")"); done
within_roots() { # within_roots PATH
  local parent resolved root
  for root in $KB_ROOTS; do [[ $1 == "$root" ]] && return 0; done
  parent=$(dirname -- "$1")
  resolved=$(realpath -m -- "$parent")/${1##*/}
  for root in "${roots[@]}"; do [[ $resolved == "$root" || $resolved == "$root"/* ]] && return 0; done
  return 1
}

# A missing path is not silently skipped: it is reported, listed in the manifest,
# and the workflow sends a warning naming it.
present=()
missing=()
for path in $KB_PATHS; do
  if ! within_roots "$path"; then
    echo "files-backup: $path leads to $(realpath -m -- "$path") through a symbolic link, outside the $KB_KIND paths ($KB_ROOTS); nothing was archived" >&2
    exit 1
  fi
  if [[ -e $path || -L $path ]]; then present+=("${path#/}"); else missing+=("$path"); fi
done
if ((${#present[@]} == 0)); then
  echo "files-backup: none of the $KB_KIND paths exist on this host: $KB_PATHS" >&2
  exit 1
fi
mapfile -t exclude < <(tar_excludes "$KB_EXCLUDES" "${present[@]}")

# --index-file takes the verbose listing, one line per entry, away from the data.
# Each stage records its status (`stage`): the object is created only if all succeeded.
# shellcheck disable=SC2086 # KB_COMPRESS is a command and its options
stage "$work/tar.status" tar --create --file=- --directory=/ --verbose --index-file="$work/index" "${exclude[@]}" -- "${present[@]}" \
  2>"$work/tar.err" \
  | stage "$work/compress.status" $KB_COMPRESS \
  | store_archive "$partial" "$KB_ARCHIVE_KEY" '' "$work" "$work/tar.status" "$work/compress.status" >"$work/sha256" \
  || { cat "$work/tar.err" >&2; exit 1; }

size=$(stat -c %s "$partial")
sha256=$(<"$work/sha256")
mv "$partial" "$local_path"
entries=$(wc -l <"$work/index")
finished_at=$(utc_now)

echo "files-backup: $KB_KIND -> s3://$KB_BUCKET/$KB_ARCHIVE_KEY ($size bytes, $entries entries, ${#missing[@]} missing)"
# The paths passed the project's strict path pattern: json_list needs no escaping.
printf 'KB-RESULT {"size": %s, "sha256": "%s", "startedAt": "%s", "finishedAt": "%s", "entries": %s, "missing": %s}\n' \
  "$size" "$sha256" "$started_at" "$finished_at" "$entries" "$(json_list "${missing[@]}")"
