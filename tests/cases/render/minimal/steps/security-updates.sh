#!/bin/bash
set -euo pipefail
# Every droplet made from the snapshot starts with these updates in place.
export DEBIAN_FRONTEND=noninteractive
# On a fresh droplet cloud-init and unattended-upgrades may hold apt's locks for a while, and a
# mirror may blink: wait for the locks and retry the index download.
apt_get() { apt-get -o DPkg::Lock::Timeout=900 -o Dpkg::Options::=--force-confold "$@"; }
for _ in $(seq 10); do
  apt_get update && break
  sleep 15
done
apt_get upgrade --yes
