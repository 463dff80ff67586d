"""A connection's Microsoft credentials: the shared Graph clients built from them and the client
secret's lifecycle (expiry warnings, rejection by Entra)."""
