"""Where classimage puts things on a droplet. The runner (templates/provision.py.j2), the user data
and the tests all take these paths from here."""

LIB = "/usr/local/lib/classimage"
RUNNER = "/usr/local/sbin/classimage-provision"
PLAN = f"{LIB}/plan.json"
STATUS = "/var/lib/classimage/status.json"
LOG = "/var/log/classimage.log"
LOCK = "/run/classimage-provision.lock"
# cloud-init runs the scripts here at every boot: resumes a provisioning a reboot interrupted.
RESUME_HOOK = "/var/lib/cloud/scripts/per-boot/classimage-resume"
METADATA_GUARD = f"{LIB}/metadata-guard"
METADATA_GUARD_UNIT = "/etc/systemd/system/classimage-metadata-guard.service"
# Written when a bake is sealed into a snapshot: what the image holds (which spec, which bake).
IMAGE = "/var/lib/classimage/image.json"
# On Packer's build droplet: wait for the bake, seal it, clean the system for the snapshot.
FINISH_BAKE = f"{LIB}/finish-bake"
IMAGE_CLEANUP = f"{LIB}/image-cleanup"
# The course's postBuild (repo2docker's), installed where the post-build step runs it.
POST_BUILD = f"{LIB}/post-build"
