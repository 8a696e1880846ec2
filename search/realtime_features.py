"""Search on the page: no socket types of its own, only the search box's script (the API is HTTP)."""

from __future__ import annotations

from realtime.features import feature

search = feature(
    "search", doc="Full-text search of the rooms one may read (GET /api/search/).", scripts=("js/features/search.js",)
)
