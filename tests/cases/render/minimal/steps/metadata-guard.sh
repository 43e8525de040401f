#!/bin/bash
set -euo pipefail
install -D --mode=0755 /usr/local/lib/classimage/files/metadata-guard/metadata-guard /usr/local/lib/classimage/metadata-guard
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.service /etc/systemd/system/classimage-metadata-guard.service
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.conf /etc/systemd/system/jupyterhub.service.d/classimage-metadata-guard.conf
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.conf /etc/systemd/system/cron.service.d/classimage-metadata-guard.conf
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.conf /etc/systemd/system/atd.service.d/classimage-metadata-guard.conf
systemctl daemon-reload
systemctl enable classimage-metadata-guard.service
if ! systemctl restart classimage-metadata-guard.service; then
  # Why, in this step's log: the class does not open without the guard.
  journalctl --unit=classimage-metadata-guard.service --boot --no-pager --lines=10 || true
  exit 1
fi
/usr/local/lib/classimage/metadata-guard --check
