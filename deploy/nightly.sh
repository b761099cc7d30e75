#!/bin/sh
# The nightly learning loop (docs/retrain.md, "Every night"): export the store's
# conversations, optionally accept the agents' tags, train from the current model, and let
# the evaluation gate promote the new model or keep the current one. Serving replicas that
# share FRONTDESK_HOME's models/ pick a promoted model up by hot swap.
#
# Environment: FRONTDESK_BOT, FRONTDESK_HOME (and FRONTDESK_DATABASE_URL for PostgreSQL),
# FRONTDESK_NIGHTLY_ACCEPT_TAGS=1 to accept every agent tag without a person's review,
# FRONTDESK_NIGHTLY_LOGS: more chat logs to train on (space-separated paths).
# Exit status: 0 trained and promoted (or nothing new), 3 the gate kept the current model,
# anything else a failure.
set -eu

bot="${FRONTDESK_BOT:?FRONTDESK_BOT must name the bot folder}"
home="${FRONTDESK_HOME:?FRONTDESK_HOME must name the data folder}"
exports="$home/exports"
mkdir -p "$exports"
chmod 700 "$exports"

frontdesk export --out "$exports/conversations.jsonl" --tags "$exports/tags.csv"
if [ "${FRONTDESK_NIGHTLY_ACCEPT_TAGS:-0}" = 1 ]; then
  frontdesk tags review --accept-tagged
fi

set -- --logs "$exports/conversations.jsonl"
if [ -f "$bot/dialogues.jsonl" ]; then
  set -- --logs "$bot/dialogues.jsonl" "$@"
fi
for extra in ${FRONTDESK_NIGHTLY_LOGS:-}; do
  set -- "$@" --logs "$extra"
done

status=0
frontdesk train --if-stale "$@" || status=$?
if [ "$status" -eq 3 ]; then
  echo "nightly: the gate kept the current model (see the candidate's reports/gate.md)" >&2
fi
exit "$status"
