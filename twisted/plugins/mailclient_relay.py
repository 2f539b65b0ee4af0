"""
The twistd dropin for C{twistd mailclient-relay} (see
L{mailclient.relay.tap}).  It imports nothing heavy.
"""

from twisted.application.service import ServiceMaker

mailclientRelay = ServiceMaker(
    "mailclient outbound relay",
    "mailclient.relay.tap",
    "Queue mail from local applications durably and deliver it to a smarthost.",
    "mailclient-relay",
)
