"""wfe-containerd: a native containerd client (``wfe_containerd.client``) and the containerd step.

Importing the package is cheap; grpc is loaded only by the client modules.
"""

__version__ = "0.1.0"
