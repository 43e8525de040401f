#!/bin/bash
set -euo pipefail
# In: SSH for the operator, HTTP and HTTPS for the hub (and Let's Encrypt's challenge); nothing else.
ufw allow 22/tcp
ufw allow 80/tcp
ufw allow 443/tcp
ufw --force enable
