"""gRPC servicers: translate protobuf requests to domain calls and domain results back."""
