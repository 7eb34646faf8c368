#!/bin/bash
# Runs commands from the target's config on the host, one after another, each
# printed before it runs: stopping and starting the application, or the steps
# after a files restore (reinstall, build, restart). The first failure stops.
#
# Parameters: KB_WHAT (what the commands do, for the output) KB_COMMANDS (one per line)

count=0
while IFS= read -r command; do
  [[ -n $command ]] || continue
  count=$((count + 1))
  echo "run-commands: $KB_WHAT: $command"
  bash -c "$command" || {
    echo "run-commands: $KB_WHAT: \"$command\" failed with status $?" >&2
    exit 1
  }
done <<<"$KB_COMMANDS"
echo "run-commands: $KB_WHAT: $count command(s) done"
