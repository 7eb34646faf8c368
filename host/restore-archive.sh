#!/bin/bash
# Restore test, run on the DB host: restores the host's copy of an archive into a
# scratch database. The copy must have the sha256 that the verify stage proved for
# the object in S3, so this restores exactly the bytes stored off-site. The
# restore-test stage then checks the tables and drops the scratch database.
#
# Parameters: KB_PG_MODE KB_COMPOSE_FILE KB_COMPOSE_SERVICE KB_LOCAL_PATH KB_SHA256
#   KB_DECOMPRESS KB_SCRATCH_DATABASE

if [[ ! -f $KB_LOCAL_PATH ]]; then
  echo "restore-test: the host has no copy at $KB_LOCAL_PATH; was it pruned or moved?" >&2
  exit 1
fi
actual=$(sha256sum "$KB_LOCAL_PATH" | cut -d' ' -f1)
if [[ $actual != "$KB_SHA256" ]]; then
  echo "restore-test: $KB_LOCAL_PATH has sha256 $actual, the manifest says $KB_SHA256; the host's copy is damaged" >&2
  exit 1
fi

created=
cleanup() {
  local status=$?
  set +e
  if ((status != 0)) && [[ -n $created ]]; then
    pg dropdb --if-exists --force "$KB_SCRATCH_DATABASE"
  fi
}
trap cleanup EXIT

pg dropdb --if-exists --force "$KB_SCRATCH_DATABASE"
pg createdb "$KB_SCRATCH_DATABASE"
created=1
# One transaction: a dump that does not restore completely leaves nothing behind.
$KB_DECOMPRESS <"$KB_LOCAL_PATH" \
  | pg psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$KB_SCRATCH_DATABASE" >/dev/null

echo "restore-test: restored $KB_LOCAL_PATH into $KB_SCRATCH_DATABASE"
