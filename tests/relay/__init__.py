"""
Tests of the relay (L{mailclient.relay}): the durable queue, the
submission listener, the scheduler, the twistd plugin, and the relay under
faults (a full disk, a failing C{fsync}, a smarthost that resets, a
thousand submissions at once).
"""
