#!/bin/bash
# Turn the baked system into a snapshot-ready image (DigitalOcean Marketplace's requirements): no
# identity, secret, key, password, history, log or account from the build may reach the droplets
# made from it; each makes its own at first boot (cloud-init, systemd, the boot user data).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# The hub: stopped and disabled until a droplet's boot user data gives it fresh secrets; no database
# (accounts and approvals from the build), no cookie or proxy secret, no Let's Encrypt account.
systemctl disable --now jupyterhub.service traefik.service 2>/dev/null || true
rm -f /opt/tljh/state/jupyterhub.sqlite /opt/tljh/state/jupyterhub_cookie_secret \
  /opt/tljh/state/traefik-api.secret /opt/tljh/state/traefik.toml /opt/tljh/state/acme.json \
  /opt/tljh/state/passwords.dbm*

# Caches: apt's, conda's, pip's; classimage's own bake files (a droplet's boot user data brings its own).
apt-get --yes autoremove --purge
apt-get --yes clean
if [ -x /opt/tljh/user/bin/conda ]; then
  /opt/tljh/user/bin/conda clean --all --yes
fi
rm -rf /root/.cache /home/*/.cache
rm -rf /usr/local/lib/classimage/steps /usr/local/lib/classimage/files /usr/local/lib/classimage/plan.json

# Accounts: no password on any account (a locked one instead), no SSH keys, no shell history.
awk -F: '$2 == "" || $2 ~ /^\$/ {print $1}' /etc/shadow | while read -r user; do
  usermod --password '*' "$user"
done
rm -f /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys
find /root /home -path '*/.ssh/id_*' -type f -delete
rm -f /root/.bash_history /home/*/.bash_history
unset HISTFILE

# Identity: SSH host keys and the machine-id are made anew at each droplet's first boot, and
# cloud-init forgets this instance so the next boot is a first boot.
rm -f /etc/ssh/ssh_host_*
install -m 0600 /dev/null /etc/ssh/revoked_keys
truncate --size=0 /etc/machine-id
# systemd takes D-Bus's copy of the id when /etc/machine-id is empty (Debian keeps a real file there):
# make it point at the empty one, as Ubuntu does.
ln -sf /etc/machine-id /var/lib/dbus/machine-id
cloud-init clean --logs
# DigitalOcean reinstalls its agents on droplets that use them; the Marketplace refuses images with them.
rm -rf /opt/digitalocean

# Logs: rotated ones deleted, the rest emptied; the journal vacuumed.
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' -o -name '*.journal~' \) -delete
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
find /var/log -type f ! -path '/var/log/journal/*' -exec truncate --size=0 {} +

# Temporary files.
find /tmp /var/tmp -mindepth 1 -delete
sync
