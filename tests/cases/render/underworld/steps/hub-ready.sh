#!/bin/bash
# A classimage provisioning step, run by classimage-provision. Safe to run again.
set -euo pipefail
# Ready when the hub's API answers 200 through the proxy on port 80, as students reach it (the
# proxy answers 404 for a few seconds while the hub registers its routes).
deadline=$((SECONDS + 180))
while [ "$SECONDS" -lt "$deadline" ]; do
  if curl --fail --silent --max-time 5 --output /dev/null http://127.0.0.1/hub/api; then
    exit 0
  fi
  sleep 2
done
echo "the hub did not answer at" http://127.0.0.1/hub/api "within" 180 "seconds:" \
  "see journalctl -u jupyterhub -u traefik" >&2
exit 1
