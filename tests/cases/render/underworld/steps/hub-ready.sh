#!/bin/bash
set -euo pipefail
# Ready when the hub itself answers through the proxy, as students reach it: the JSON of its API.
answers() {
  curl --fail --silent --max-time 5 --noproxy '*' http://127.0.0.1/hub/api |
    python3 -c 'import json, sys; sys.exit("version" not in json.load(sys.stdin))' 2>/dev/null
}
deadline=$((SECONDS + 180))
while [ "$SECONDS" -lt "$deadline" ]; do
  if answers; then
    exit 0
  fi
  sleep 2
done
echo "the hub did not answer at" http://127.0.0.1/hub/api "within" 180 "seconds:" \
  "see journalctl -u jupyterhub -u traefik" >&2
exit 1
