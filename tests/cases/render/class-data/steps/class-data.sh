#!/bin/bash
# A classimage provisioning step, run by classimage-provision. Safe to run again.
set -euo pipefail
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data.service /etc/systemd/system/classimage-data.service
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data-copy.service /etc/systemd/system/classimage-data-copy.service
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data-copy.timer /etc/systemd/system/classimage-data-copy.timer
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data.conf /etc/systemd/system/jupyterhub.service.d/classimage-data.conf
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data.conf /etc/systemd/system/traefik.service.d/classimage-data.conf
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data-missing.socket /etc/systemd/system/classimage-data-missing.socket
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data-missing.service /etc/systemd/system/classimage-data-missing.service
install -D --mode=0755 /usr/local/lib/classimage/files/class-data/classimage-class-data /usr/local/sbin/classimage-class-data
# The class's data on its own device, before the hub first starts: formatted only if it holds no
# filesystem at all, mounted, homes and hub state bound into place, accounts recreated from homes.
/usr/local/sbin/classimage-class-data prepare /dev/disk/by-id/virtio-classdata --course campus --admin alice
systemctl daemon-reload
systemctl enable --now classimage-data.service classimage-data-copy.timer
