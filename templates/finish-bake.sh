#!/bin/bash
# Packer runs this on the build droplet once it answers SSH: wait for the bake, fail the build
# unless it succeeded (the seal prints the failed step and its log tail), then clean the system
# into an image every droplet can be made from.
set -euo pipefail
cloud-init status --wait >/dev/null || true # a failure shows in the seal's report
/usr/local/sbin/classimage-provision seal
exec /usr/local/lib/classimage/image-cleanup
