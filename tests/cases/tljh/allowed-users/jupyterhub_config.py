# Written by classimage. TLJH loads the files in jupyterhub_config.d after
# config.yaml, for settings config.yaml has no key for.

# Pull the course repository into each student's home and open it whenever their server starts.
c.Spawner.default_url = '/git-pull?repo=https%3A%2F%2Fgithub.com%2Forg%2Fnotes.git&branch=week-1%2Fintro&urlpath=tree%2Fnotes%2FWeek%25201%2FStart%2520Here%2520%25231.ipynb'

# The provisioning status, for anyone (a health check) to read at /services/classimage-status/:
# states and times only. The hub runs it; TLJH may have listed its own services already.
c.JupyterHub.services.append({'name': 'classimage-status', 'url': 'http://127.0.0.1:15003', 'display': False, 'command': ['/usr/local/sbin/classimage-provision', 'serve-status', '--port', '15003']})
