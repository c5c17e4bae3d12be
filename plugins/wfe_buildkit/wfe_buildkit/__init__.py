"""wfe-buildkit: a native (gRPC) BuildKit client and the ``buildkit`` step for wfe.

The client library lives in :mod:`wfe_buildkit.client`; importing this package imports nothing
heavy, so the core can list the plugin without loading grpc.
"""
