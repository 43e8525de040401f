#!/bin/bash
set -euo pipefail
# The snapshot holds no secrets: this droplet makes its own. The proxy's API secret is made the way
# TLJH's installer makes it; JupyterHub makes its cookie secret and database when they are missing.
umask 077
secret=/opt/tljh/state/traefik-api.secret
if [ ! -s "$secret" ]; then
  mkdir -p /opt/tljh/state
  python3 -c 'import secrets; print(secrets.token_hex(32), end="")' >"$secret"
fi
# The snapshot's cleanup disabled the hub and proxy until their secrets exist.
systemctl enable jupyterhub.service traefik.service
