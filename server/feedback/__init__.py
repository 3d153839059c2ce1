"""Click feedback: query ids on answers, the Feedback RPC, its log and CTR statistics."""
