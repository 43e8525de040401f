#!/bin/bash
set -euo pipefail
install -D --mode=0600 /usr/local/lib/classimage/files/hub-accounts/hub-accounts.json /usr/local/lib/classimage/hub-accounts.json
install -D --mode=0644 /usr/local/lib/classimage/files/hub-accounts/hub-accounts.py /usr/local/lib/classimage/hub-accounts.py
# The admins' accounts, approved, with the hashes of the passwords the instructor set (or reserved,
# when none was set), stored where the hub's authenticator keeps them, with the hub's own Python.
# An admin's name held by an account, Unix user or home classimage did not make fails the step,
# changing nothing: the program names it and the fix.
#
# Nothing else may write the database meanwhile. TLJH's installer says Done! as soon as its proxy
# answers on port 80, which can be before the hub it started has made its database: two programs
# making one database at once fail (alembic's version row, made twice). So a running hub is let finish
# making it (it answers only then), and is stopped with its proxy, the proxy first: alone, it would
# answer 502 for the hub meanwhile; port 80 answers nothing for these seconds instead (systemd would
# stop the hub first, as the hub's unit requires the proxy's). The hub-reload step starts both.
# A droplet provisioned again boots a hub with the last deploy's settings, which would also hand the
# admin flag back to a TA this deploy takes it from.
if systemctl is-active --quiet jupyterhub.service; then
  deadline=$((SECONDS + 180))
  until curl --fail --silent --max-time 5 --output /dev/null http://127.0.0.1:15001/hub/health || [ "$SECONDS" -ge "$deadline" ]; do
    sleep 1
  done
  systemctl stop --job-mode=ignore-dependencies traefik.service
  systemctl stop jupyterhub.service
fi
install -d --mode=0700 /opt/tljh/state
cd /opt/tljh/state
/opt/tljh/hub/bin/python3 /usr/local/lib/classimage/hub-accounts.py /usr/local/lib/classimage/hub-accounts.json
