#!/bin/bash
set -euo pipefail
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data.service /etc/systemd/system/classimage-data.service
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data-copy.service /etc/systemd/system/classimage-data-copy.service
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data-copy.timer /etc/systemd/system/classimage-data-copy.timer
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data.conf /etc/systemd/system/jupyterhub.service.d/classimage-data.conf
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data.conf /etc/systemd/system/traefik.service.d/classimage-data.conf
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data-missing.socket /etc/systemd/system/classimage-data-missing.socket
install -D --mode=0644 /usr/local/lib/classimage/files/class-data/classimage-data-missing.service /etc/systemd/system/classimage-data-missing.service
install -D --mode=0755 /usr/local/lib/classimage/files/class-data/classimage-class-data /usr/local/sbin/classimage-class-data
# The class's data on its own device, before the class opens: formatted only if it holds no
# filesystem at all, mounted, homes and hub state bound into place, accounts recreated from homes.
device=any-digitalocean-volume-or-own-disk

# The hub and its proxy (TLJH's installer started them: closed, no signup, no account yet) stop
# while the hub's state moves onto the device, or while the droplet waits for it, and start again
# on it. Meanwhile port 80 says the class is being prepared and serves the status, which says what
# the droplet waits for (a droplet made while the old one still has the class's volume: make
# before break).
running=()
for unit in jupyterhub.service traefik.service; do
  if systemctl is-active --quiet "$unit"; then
    running+=("$unit")
  fi
done

systemctl daemon-reload
chosen=$(/usr/local/sbin/classimage-class-data wait "$device" --now) || chosen=""
if [ "$chosen" != own-disk ]; then
  if [ -n "${running[*]:-}" ]; then
    systemctl stop "${running[@]}"
  fi
  if ! ss -Htln 'sport = :80' | grep -q .; then
    systemctl start classimage-data-missing.socket
  fi
  /usr/local/sbin/classimage-class-data wait "$device"
fi
/usr/local/sbin/classimage-class-data prepare "$device" --course underworld --admin instructor
systemctl daemon-reload
systemctl enable --now classimage-data.service classimage-data-copy.timer
if [ -n "${running[*]:-}" ]; then
  systemctl start "${running[@]}"
fi
