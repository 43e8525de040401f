#!/bin/bash
set -euo pipefail
install -D --mode=0644 /usr/local/lib/classimage/files/ssh/classimage-no-students.conf /etc/ssh/sshd_config.d/classimage-no-students.conf
if ! command -v sshd >/dev/null; then
  exit 0  # the drop-in waits for an OpenSSH server installed later
fi
# sshd reads the drop-in only through the Include line of Debian's and Ubuntu's sshd_config.
effective=$(sshd -T)
for line in 'denyusers jupyter-*' 'denygroups jupyterhub-users' 'denygroups jupyterhub-admins'; do
  if ! grep -qixF "$line" <<<"$effective"; then
    echo "sshd -T lacks '$line': add 'Include /etc/ssh/sshd_config.d/*.conf' atop /etc/ssh/sshd_config" >&2
    exit 1
  fi
done
systemctl try-reload-or-restart ssh.service
