"""
Protocol-layer tests: L{mailclient.protocol.ESMTPClient} driven by hand over
a fake transport and clock, whole sessions against Twisted's ESMTP server in
memory, and L{mailclient.sendmail} with fake endpoints.
"""
