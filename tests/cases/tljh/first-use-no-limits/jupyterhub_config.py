# Written by classimage. TLJH loads the files in jupyterhub_config.d after
# config.yaml, for settings config.yaml has no key for.

# Pull the course repository into each student's home and open it whenever their server starts.
c.Spawner.default_url = '/git-pull?repo=https%3A%2F%2Fgitlab.example.edu%3A8443%2Fgeo%2Fdata&urlpath=lab%2Ftree%2Fdata'
