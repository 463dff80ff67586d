"""One SSL context per CA bundle and process, read again when the bundle file changes."""

from __future__ import annotations

from pathlib import Path

import trustme

from app.tls import ssl_context


def _subjects(context: object) -> set[str]:
    return {
        str(dict(part[0] for part in cert["subject"]))
        for cert in context.get_ca_certs()  # type: ignore[attr-defined]
    }


def test_a_bundle_gives_one_shared_context_until_the_file_changes(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    first, second = trustme.CA(organization_name="First CA"), trustme.CA(organization_name="Other")
    first.cert_pem.write_to_path(str(bundle))
    context = ssl_context(bundle)
    assert ssl_context(bundle) is context
    assert any("First CA" in subject for subject in _subjects(context))

    second.cert_pem.write_to_path(str(bundle))
    with bundle.open("a") as extra:  # a different size too, whatever the clock's resolution
        extra.write("\n")
    renewed = ssl_context(bundle)
    assert renewed is not context
    assert any("Other" in subject for subject in _subjects(renewed))
    assert ssl_context(None) is ssl_context(None)
