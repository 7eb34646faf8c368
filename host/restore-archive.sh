#!/bin/bash
# Restores one archive into a new database, on the DB host: the restore test's
# scratch database, or a restore's staging database. The host's own copy is used
# when its sha256 is the one verified for the object in S3; otherwise the object
# is fetched (the host then needs read access to the backup prefixes) and must
# have that sha256 too. So this restores exactly the bytes stored off-site.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_LOCAL_PATH KB_SHA256
#   KB_DECOMPRESS KB_INTO KB_BUCKET KB_ARCHIVE_KEY KB_S3_ENDPOINT_URL

work=$(mktemp -d)
created=
cleanup() {
  local status=$?
  set +e
  if ((status != 0)) && [[ -n $created ]]; then
    pg dropdb --if-exists --force "$KB_INTO"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

archive=$KB_LOCAL_PATH
if [[ ! -f $archive || $(sha256sum "$archive" | cut -d' ' -f1) != "$KB_SHA256" ]]; then
  echo "restore-archive: no intact copy at $KB_LOCAL_PATH; fetching s3://$KB_BUCKET/$KB_ARCHIVE_KEY"
  archive=$work/archive
  s3_get "$KB_ARCHIVE_KEY" >"$archive"
  actual=$(sha256sum "$archive" | cut -d' ' -f1)
  if [[ $actual != "$KB_SHA256" ]]; then
    echo "restore-archive: s3://$KB_BUCKET/$KB_ARCHIVE_KEY has sha256 $actual, the manifest says $KB_SHA256; do not restore from it" >&2
    exit 1
  fi
fi

# psql quotes the name (:'into'); variables are not interpolated in -c, so stdin.
exists=$(echo "SELECT 1 FROM pg_database WHERE datname = :'into';" | pg psql -X -A -t -d postgres -v into="$KB_INTO")
if [[ -n $exists ]]; then
  echo "restore-archive: the database $KB_INTO already exists; a restore never writes into an existing database" >&2
  exit 1
fi
pg createdb "$KB_INTO"
created=1
# One transaction: a dump that does not restore completely leaves nothing behind.
$KB_DECOMPRESS <"$archive" \
  | pg psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$KB_INTO" >/dev/null

echo "restore-archive: restored $KB_ARCHIVE_KEY into $KB_INTO"
