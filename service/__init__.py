"""The alignserve service: BentoML services, HTTP API, runtime, settings, metrics, client."""

import logging

# BentoML leaves the root logger at WARNING; the service's own start-up and bad-input lines
# are INFO and worth keeping.
logging.getLogger(__name__).setLevel(logging.INFO)
