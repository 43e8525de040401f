#!/bin/bash
set -euo pipefail
# TLJH creates its config folders 0700 but keeps the mode of one that exists: make them as TLJH would.
install -d --mode=0700 /opt/tljh/config /opt/tljh/config/jupyterhub_config.d
install -D --mode=0600 /usr/local/lib/classimage/files/hub-lockdown/config.yaml /opt/tljh/config/config.yaml
# Written before TLJH is installed, so the hub's first start already has the course's sign-in
# rules (TLJH keeps a config.yaml it finds); later runs pick changes up at the hub reload.
