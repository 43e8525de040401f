#!/bin/bash
set -euo pipefail
# TLJH's bootstrap installs the hub at the pinned version; re-running it is TLJH's own upgrade path.
mkdir -p /var/lib/classimage
bootstrap=/var/lib/classimage/tljh-bootstrap.py
curl --fail --silent --show-error --location --retry 5 --retry-connrefused --output "$bootstrap" https://tljh.jupyter.org/bootstrap.py
args=(--version 2.0.0)
# classimage's own progress page holds port 80 while provisioning: TLJH's installer stops it just
# before its proxy needs the port.
page_pid=CLASSIMAGE_PROGRESS_PAGE_PID
if [ -n "${!page_pid:-}" ]; then
  args+=(--progress-page-server-pid "${!page_pid}")
fi
python3 "$bootstrap" "${args[@]}"
