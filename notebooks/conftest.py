"""nbval runs every notebook here under the smoke profile unless told otherwise.

The notebooks' ``parameters`` cells default to ``profile = None``, which reads ``UMLKIT_PROFILE``;
the kernels nbval starts inherit this process's environment.
"""

import os

os.environ.setdefault("UMLKIT_PROFILE", "smoke")
