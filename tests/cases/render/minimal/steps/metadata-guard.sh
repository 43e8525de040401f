#!/bin/bash
# A classimage provisioning step, run by classimage-provision. Safe to run again.
set -euo pipefail
install -D --mode=0755 /usr/local/lib/classimage/files/metadata-guard/metadata-guard /usr/local/lib/classimage/metadata-guard
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.service /etc/systemd/system/classimage-metadata-guard.service
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.conf /etc/systemd/system/jupyterhub.service.d/classimage-metadata-guard.conf
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.conf /etc/systemd/system/cron.service.d/classimage-metadata-guard.conf
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.conf /etc/systemd/system/atd.service.d/classimage-metadata-guard.conf
systemctl daemon-reload
systemctl enable classimage-metadata-guard.service
systemctl restart classimage-metadata-guard.service
/usr/local/lib/classimage/metadata-guard --check
