"""The sync history's readable texts by domain, each code in German and English; the functions
that render them are in app.history.messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Locale = Literal["de", "en"]
Texts = Mapping[str, Mapping[Locale, str]]
