#!/bin/sh
# cloud-init runs this at every boot. It resumes a classimage provisioning that a reboot interrupted
# and does nothing otherwise (not started yet, ready, or failed and waiting for a fix).
exec /usr/local/sbin/classimage-provision resume
