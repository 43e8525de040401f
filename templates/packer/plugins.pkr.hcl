# Packer 1.7 and newer load the DigitalOcean builder as a plugin (`packer init` fetches it). Packer
# 1.6 has it built in and rejects this block, so it lives in its own file: build classimage.pkr.hcl
# alone with Packer 1.6, this whole folder with newer Packer.
#
# The plugin runs with the DigitalOcean token, so it is pinned to one release, never a range: a new
# release reaches a course only when this line changes in a classimage commit. To update it, read the
# release's notes (github.com/digitalocean/packer-plugin-digitalocean/releases), set the version
# below, and run a build (`classimage build`) with it once; `packer init` checks the download against
# the release's SHA256SUMS.
packer {
  required_plugins {
    digitalocean = {
      source  = "github.com/digitalocean/digitalocean"
      version = "= 1.4.1"
    }
  }
}
