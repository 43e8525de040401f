# Written by classimage. TLJH loads the files in jupyterhub_config.d after
# config.yaml, for settings config.yaml has no key for.
import os

import nativeauthenticator

# TLJH does not add NativeAuthenticator's templates; without them the hub's pages have no
# "Authorize Users" or "Change Password" links.
c.JupyterHub.template_paths = [os.path.join(os.path.dirname(nativeauthenticator.__file__), "templates")]
