"""Route templates for BentoML's request metrics (service/endpoint_labels.py)."""

from __future__ import annotations

from service.endpoint_labels import api_templates


def test_every_path_maps_to_the_route_that_serves_it_or_to_unmatched() -> None:
    templates = api_templates()
    assert templates("/v1/reward/score") == "/v1/reward/score"
    assert templates("/v1/feedback/ticket-981") == "/v1/feedback/{record_id}"
    assert templates("/v1/admin/models/reward") == "/v1/admin/models/{role}"
    assert templates("/v1/feedback/a/b") == "/v1/{unmatched}"
    assert templates("/v1") == "/v1/{unmatched}"
    assert templates("/v1x/score") == "/{unmatched}"
    assert templates("/docs.json") == "/docs.json"
    assert templates("/static_content/swagger-ui.css") == "/static_content/{file}"
    assert templates("/etc/passwd") == "/{unmatched}"
