#!/bin/bash
# A classimage provisioning step, run by classimage-provision. Safe to run again.
set -euo pipefail
install -D --mode=0755 /usr/local/lib/classimage/files/metadata-guard/metadata-guard /usr/local/lib/classimage/metadata-guard
install -D --mode=0644 /usr/local/lib/classimage/files/metadata-guard/classimage-metadata-guard.service /etc/systemd/system/classimage-metadata-guard.service
systemctl daemon-reload
systemctl enable classimage-metadata-guard.service
systemctl restart classimage-metadata-guard.service
/usr/local/lib/classimage/metadata-guard --check
