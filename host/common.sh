# Shared by every host script; shared/shell.ts renders it between the parameters
# and the script's own body.
set -euo pipefail
umask 077

# Run a PostgreSQL client tool where the database lives.
pg() {
  if [[ $KB_PG_MODE == docker ]]; then
    docker compose -f "$KB_COMPOSE_FILE" exec -T "$KB_COMPOSE_SERVICE" "$@"
  else
    "$@"
  fi
}

s3_put() { # s3_put KEY CONTENT-TYPE < body
  local endpoint=()
  [[ -n ${KB_S3_ENDPOINT_URL:-} ]] && endpoint=(--endpoint-url "$KB_S3_ENDPOINT_URL")
  aws s3 cp - "s3://$KB_BUCKET/$1" "${endpoint[@]}" --only-show-errors --content-type "$2"
}

s3_get() { # s3_get KEY > body
  local endpoint=()
  [[ -n ${KB_S3_ENDPOINT_URL:-} ]] && endpoint=(--endpoint-url "$KB_S3_ENDPOINT_URL")
  aws s3 cp "s3://$KB_BUCKET/$1" - "${endpoint[@]}" --only-show-errors
}

utc_now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
