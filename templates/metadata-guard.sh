#!/bin/bash
# Keep every process but root's away from the cloud metadata service: a student's notebook could
# otherwise read the droplet's user data back from 169.254.169.254.
# `metadata-guard` adds the rule once; `metadata-guard --check` exits 0 when it is in place.
set -euo pipefail
rule=(--destination 169.254.169.254 --match owner ! --uid-owner 0 --jump REJECT)
if [ "${1:-}" = --check ]; then
  exec iptables --wait --check OUTPUT "${rule[@]}"
fi
iptables --wait --check OUTPUT "${rule[@]}" 2>/dev/null || iptables --wait --insert OUTPUT 1 "${rule[@]}"
