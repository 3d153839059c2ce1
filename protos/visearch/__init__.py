"""visearch gRPC API (generated code lives beside the .proto files)."""
