# Packer 1.7 and newer load the DigitalOcean builder as a plugin (`packer init` fetches it). Packer
# 1.6 has it built in and rejects this block, so it lives in its own file: build classimage.pkr.hcl
# alone with Packer 1.6, this whole folder with newer Packer.
packer {
  required_plugins {
    digitalocean = {
      source  = "github.com/digitalocean/digitalocean"
      version = ">= 1.0.0"
    }
  }
}
