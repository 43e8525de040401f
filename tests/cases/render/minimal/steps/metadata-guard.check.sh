#!/bin/bash
# A classimage provisioning step, run by classimage-provision. Safe to run again.
set -euo pipefail
systemctl is-enabled --quiet classimage-metadata-guard.service
/usr/local/lib/classimage/metadata-guard --check
