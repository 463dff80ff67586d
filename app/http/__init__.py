"""The HTTP hardening every route shares: problem documents (RFC 9457) and body and header caps."""
