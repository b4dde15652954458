"""Generated protobuf and gRPC stubs; rebuilt by `make proto`."""
