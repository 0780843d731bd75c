"""TallyIO on NATS JetStream."""
