"""Feedback from production: the records people send about what the models did, and their
durable store. Shared by the service (which writes) and the CLI and trainers (which read);
like models/, it never imports torch."""
