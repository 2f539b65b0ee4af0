"""
The wire core: SMTP rules as pure functions and immutable values.

Nothing in this package imports Twisted.  It parses replies and capabilities,
encodes commands and message data, implements the SASL mechanisms, and makes
the TLS/authentication decision.  The protocol layer (L{mailclient.protocol})
calls into it; it never calls back out.
"""
