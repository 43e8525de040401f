#!/bin/bash
set -euo pipefail
# Done when ufw is on and lets SSH, HTTP and HTTPS in.
rules=$(ufw status)
grep -q '^Status: active' <<<"$rules"
for port in 22 80 443; do
  grep -q "^$port/tcp .*ALLOW" <<<"$rules"
done
