#!/bin/bash
# A classimage provisioning step, run by classimage-provision. Safe to run again.
set -euo pipefail
install -D --mode=0600 /usr/local/lib/classimage/files/hub-accounts/hub-accounts.json /usr/local/lib/classimage/hub-accounts.json
install -D --mode=0644 /usr/local/lib/classimage/files/hub-accounts/hub-accounts.py /usr/local/lib/classimage/hub-accounts.py
# The admins' accounts, approved, with the hashes of the passwords the instructor set (or reserved,
# when none was set), stored where the hub's authenticator keeps them, with the hub's own Python.
# An admin's name held by an account, Unix user or home classimage did not make fails the step,
# changing nothing: the program names it and the fix.
install -d --mode=0700 /opt/tljh/state
cd /opt/tljh/state
/opt/tljh/hub/bin/python3 /usr/local/lib/classimage/hub-accounts.py /usr/local/lib/classimage/hub-accounts.json
