#!/bin/bash
set -euo pipefail
# classimage's progress page holds port 80 while the class is prepared (classimage-provision gives
# steps its process id); a step that starts the proxy takes the port back first.
stop_progress_page() {
  local variable=CLASSIMAGE_PROGRESS_PAGE_PID tries
  [ -n "${!variable:-}" ] || return 0
  kill "${!variable}" 2>/dev/null || return 0
  for tries in $(seq 100); do
    ss -Htln 'sport = :80' | grep -q . || return 0
    sleep 0.1
  done
  echo "classimage's progress page still holds port 80 after $tries tries" >&2
  return 1
}
# The course's software is in place: open the class to students (the hub's gate reads this file).
install -D --mode=0644 /dev/null /var/lib/classimage/hub-open
# Re-render the proxy's settings (they carry HTTPS) and restart it; systemd restarts a running hub
# with it (jupyterhub.service requires traefik.service). TLJH's own waits have no time limit.
stop_progress_page
timeout 180 tljh-config reload proxy
# A hub that was not running (a droplet from the snapshot, or hub-accounts stopped it) starts now.
systemctl start jupyterhub.service
