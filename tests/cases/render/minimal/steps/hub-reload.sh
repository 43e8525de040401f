#!/bin/bash
# A classimage provisioning step, run by classimage-provision. Safe to run again.
set -euo pipefail
# The course's software is in place: open the class to students (the hub's gate reads this file).
install -D --mode=0644 /dev/null /var/lib/classimage/hub-open
# Re-render the proxy's settings (they carry HTTPS) and restart it; systemd restarts a running hub
# with it (jupyterhub.service requires traefik.service). TLJH's own waits have no time limit.
timeout 180 tljh-config reload proxy
# A hub that was not running (a droplet from the snapshot) starts now; one that was, restarted above.
systemctl start jupyterhub.service
