"""Generated protobuf/gRPC stubs (``nox -s protos``); the ``.proto`` sources sit next to them."""
