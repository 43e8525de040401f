# Bakes the course's software into a DigitalOcean snapshot. Made by classimage; run it with
# `python -m classimage build SPEC`, or `packer build` with DIGITALOCEAN_TOKEN set. The API token
# comes only from the environment: nothing in this folder is secret. Snapshots are named
# SLUG-BAKEDIGEST-TIME: `classimage up` takes the newest one baked from the spec's software.

variable "api_token" {
  type      = string
  default   = env("DIGITALOCEAN_TOKEN")
  sensitive = true
}

locals {
  timestamp = regex_replace(timestamp(), "[- TZ:]", "")
}

source "digitalocean" "course" {
  api_token        = var.api_token
  image            = "debian-12-x64"
  region           = "nyc3"
  size             = "s-2vcpu-4gb"
  snapshot_regions = ["nyc3"]
  snapshot_name    = format("%s-%s-%s", "underworld", "5f07646d6b520d67", local.timestamp)
  droplet_name     = "underworld-bake"
  tags             = ["classimage", "classimage-bake:underworld"]
  user_data_file   = "${path.root}/../bake/user-data.yaml"
  ssh_username     = "root"
  monitoring       = false
}

build {
  sources = ["source.digitalocean.course"]

  # Wait for the bake, fail unless it succeeded (showing why), then clean the image.
  provisioner "shell" {
    inline = ["/usr/local/sbin/classimage-provision finish-bake"]
  }
}
