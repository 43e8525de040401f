#!/bin/bash
set -euo pipefail
systemctl is-enabled --quiet classimage-metadata-guard.service
[ -f /etc/systemd/system/jupyterhub.service.d/classimage-metadata-guard.conf ]
[ -f /etc/systemd/system/cron.service.d/classimage-metadata-guard.conf ]
[ -f /etc/systemd/system/atd.service.d/classimage-metadata-guard.conf ]
/usr/local/lib/classimage/metadata-guard --check
