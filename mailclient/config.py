"""
Connection settings from keyword arguments, an C{smtp://} URL and
C{MAILCLIENT_*} environment variables.

L{loadSettings} merges three levels, setting by setting: a keyword argument
(not L{None}) wins over the URL, which wins over the environment.  The
result, an L{SMTPSettings}, records where each setting came from and turns
into the keyword arguments of L{mailclient.sendmail},
L{mailclient.verifyConnection} and L{mailclient.Mailer} with
L{SMTPSettings.keywords}::

    settings = loadSettings("smtps://alice@smtp.example.com")
    d = sendmail(
        fromAddress="alice@example.com",
        toAddresses=["bob@example.com"],
        message=message,
        **settings.keywords(),
    )

Every bad setting, and every conflict between settings, raises
L{mailclient.errors.InvalidArgumentError} naming the keyword, the
environment variable or the (redacted) URL at fault.  Loading does no I/O:
no network, no DNS, no file; certificate files are read by
L{SMTPSettings.keywords}.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import types
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)

from mailclient._wire.policy import TLSMode
from mailclient.errors import InvalidArgumentError

__all__ = ["ENVIRONMENT_VARIABLES", "SMTPSettings", "loadSettings"]

ENVIRONMENT_VARIABLES: Mapping[str, str] = types.MappingProxyType(
    {
        "host": "MAILCLIENT_HOST",
        "port": "MAILCLIENT_PORT",
        "username": "MAILCLIENT_USERNAME",
        "password": "MAILCLIENT_PASSWORD",
        "tls": "MAILCLIENT_TLS",
        "timeout": "MAILCLIENT_TIMEOUT",
        "heloName": "MAILCLIENT_HELO_NAME",
        "clientCertificate": "MAILCLIENT_CLIENT_CERT",
        "clientKey": "MAILCLIENT_CLIENT_KEY",
        "caCertificates": "MAILCLIENT_CA_FILE",
    }
)
"""
The environment variable of each setting, by setting name.
"""

_SCHEMES: Mapping[str, str | None] = {
    "smtp": None,
    "smtp+starttls": TLSMode.STARTTLS.value,
    "smtps": TLSMode.IMPLICIT.value,
}
_QUERY = (
    "timeout",
    "heloName",
    "tls",
    "clientCertificate",
    "clientKey",
    "caCertificates",
)
_TLS_VALUES = tuple(mode.value for mode in TLSMode)
_HIDDEN = "****"
_FORBIDDEN = re.compile("[\r\n\x00]")
_URL_FORBIDDEN = re.compile("[\x00-\x20\x7f]")
_PORT_TEXT = re.compile("[0-9]+")
_TIMEOUT_TEXT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_URL_PREFIX = re.compile("[A-Za-z][A-Za-z0-9+.-]*://")
_KEYWORD = "keyword"
_URL = "url"
_ENVIRONMENT = "environment:"


def _redactURL(url: str) -> str:
    """
    C{url} with any password replaced by C{****}: everything from the first
    C{:} of the user part up to the last C{@}.  Without a C{scheme://}
    prefix the user part starts at the beginning, so a malformed URL may
    lose more than its password, never less.
    """
    if "@" not in url:
        return url
    prefix = _URL_PREFIX.match(url)
    start = prefix.end() if prefix else 0
    userinfo, _, rest = url[start:].rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return url
    return f"{url[:start]}{user}:{_HIDDEN}@{rest}"


def _checkText(
    value: object, argument: str, *, secret: bool = False, spaces: bool = True
) -> str:
    """
    C{value} if it is a non-empty C{str} without CR, LF or NUL (nor
    whitespace unless C{spaces}); a C{secret} value is never shown in the
    error.
    """
    shown = _HIDDEN if secret else value
    if not isinstance(value, str):
        raise InvalidArgumentError(
            argument, shown, f"expected a str, not {type(value).__name__}"
        )
    if not value:
        raise InvalidArgumentError(argument, value, "must not be empty")
    if _FORBIDDEN.search(value):
        raise InvalidArgumentError(argument, shown, "must not contain CR, LF or NUL")
    if not spaces and any(c.isspace() for c in value):
        raise InvalidArgumentError(argument, shown, "must not contain whitespace")
    return value


def _checkName(value: object, argument: str) -> str:
    """
    A host name or HELO name: text without whitespace.
    """
    return _checkText(value, argument, spaces=False)


def _checkPassword(value: object, argument: str) -> str:
    """
    A password: text, never shown in an error.
    """
    return _checkText(value, argument, secret=True)


def _checkPath(value: object, argument: str) -> str:
    """
    A file name: text or an C{os.PathLike} of text.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return _checkText(value, argument)


def _checkPort(value: object, argument: str) -> int:
    """
    A TCP port: an C{int} from 1 to 65535.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise InvalidArgumentError(argument, value, "expected an int 1-65535")
    return value


def _checkTimeout(value: object, argument: str) -> float:
    """
    A timeout: a finite number of seconds greater than 0, as a C{float}.
    """
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidArgumentError(
            argument, value, "expected a number of seconds greater than 0"
        )
    return float(value)


def _checkTLS(value: object, argument: str) -> str:
    """
    A TLS mode: one of the L{TLSMode} values (or a L{TLSMode}), as a
    C{str}.
    """
    if isinstance(value, TLSMode):
        return value.value
    if not isinstance(value, str) or value not in _TLS_VALUES:
        raise InvalidArgumentError(
            argument, value, f"expected one of {', '.join(_TLS_VALUES)}"
        )
    return value


_CHECKS: Mapping[str, Callable[[object, str], Any]] = {
    "host": _checkName,
    "port": _checkPort,
    "username": _checkText,
    "password": _checkPassword,
    "tls": _checkTLS,
    "timeout": _checkTimeout,
    "heloName": _checkName,
    "clientCertificate": _checkPath,
    "clientKey": _checkPath,
    "caCertificates": _checkPath,
}


def _fromText(setting: str, text: str, argument: str) -> Any:
    """
    The value of C{setting} written as C{text} (in the environment or a
    URL): ports and timeouts are decimal numbers, the rest is taken as is.
    """
    value: object = text
    if setting == "port":
        if not _PORT_TEXT.fullmatch(text):
            raise InvalidArgumentError(argument, text, "expected a port 1-65535")
        value = int(text)
    elif setting == "timeout":
        if not _TIMEOUT_TEXT.fullmatch(text):
            raise InvalidArgumentError(
                argument, text, "expected a number of seconds greater than 0"
            )
        value = float(text)
    return _CHECKS[setting](value, argument)


def _frozen(sources: Mapping[str, str]) -> Mapping[str, str]:
    """
    A read-only copy of C{sources}.
    """
    return types.MappingProxyType(dict(sources))


def _describe(source: str) -> str:
    """
    A level, for an error message: C{"the keyword"}, C{"the URL"} or the
    environment variable's name.
    """
    if source.startswith(_ENVIRONMENT):
        return source[len(_ENVIRONMENT) :]
    return "the URL" if source == _URL else "the keyword"


def _checkCoherent(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """
    Refuse settings that cannot be used together, saying where each came
    from (C{sources}; a setting missing there is described as a keyword).
    """

    def where(setting: str) -> str:
        return _describe(sources.get(setting, _KEYWORD))

    for have, lack in (("username", "password"), ("password", "username")):
        if values.get(have) is not None and values.get(lack) is None:
            raise InvalidArgumentError(
                have,
                _HIDDEN if have == "password" else values[have],
                f"a {have} (from {where(have)}) needs a {lack}, and none was "
                f"given (keyword {lack}, the URL, or "
                f"{ENVIRONMENT_VARIABLES[lack]})",
            )
    if values.get("clientKey") is not None and values.get("clientCertificate") is None:
        raise InvalidArgumentError(
            "clientKey",
            values["clientKey"],
            f"a client key (from {where('clientKey')}) needs a "
            "clientCertificate, and none was given",
        )
    if values.get("tls") == TLSMode.NONE.value:
        for setting in ("clientCertificate", "caCertificates"):
            if values.get(setting) is not None:
                raise InvalidArgumentError(
                    "tls",
                    values["tls"],
                    f"tls='none' (from {where('tls')}) never uses TLS, so "
                    f"{setting} (from {where(setting)}) cannot be used",
                )


def _optional(check: Callable[[object, str], Any], name: str) -> Any:
    """
    An attrs converter that applies C{check} to a value that is not
    L{None}, naming the setting C{name} in its errors.
    """

    def convert(value: object) -> Any:
        return None if value is None else check(value, name)

    return convert


def _setting(name: str, **kwargs: Any) -> Any:
    """
    An optional setting checked like keyword C{name} of L{loadSettings}.
    """
    return attrs.field(default=None, converter=_optional(_CHECKS[name], name), **kwargs)


@attrs.frozen(kw_only=True)
class SMTPSettings:
    """
    How to reach an SMTP server: the connection settings of
    L{mailclient.sendmail}, L{mailclient.verifyConnection} and
    L{mailclient.Mailer}, and where each came from.

    Build one with L{loadSettings}, which merges keyword arguments, a URL
    and the environment; built directly, its values are checked the same
    way (L{mailclient.errors.InvalidArgumentError}).  L{None} means "not
    set": the callee's default applies.

    @ivar host: the server's host name or IP address (also the name its
        certificate must carry); an IDN is kept as given.
    @ivar port: the server's port.
    @ivar username: the user name for AUTH; goes with C{password}.
    @ivar password: the password for AUTH; never shown by C{repr}.
    @ivar tls: a L{TLSMode} value (C{"implicit"}, C{"starttls"},
        C{"opportunistic"}, C{"none"}), or L{None} for the default rule of
        L{mailclient.sendmail}: implicit on port 465, STARTTLS required with
        credentials, opportunistic otherwise.
    @ivar timeout: no single wait lasts longer than this many seconds.
    @ivar heloName: our name in EHLO/HELO.
    @ivar clientCertificate: the path of a PEM file holding our client
        certificate (then any intermediate certificates), and its private
        key unless C{clientKey} is given.
    @ivar clientKey: the path of a PEM file holding the unencrypted private
        key of C{clientCertificate}.
    @ivar caCertificates: the path of a PEM bundle of the certificates to
        trust instead of the system's trust store.
    @ivar sources: where each setting that has a value came from, by
        setting name: C{"keyword"}, C{"url"}, or C{"environment:"} followed
        by the variable's name (C{"environment:MAILCLIENT_PORT"}).
    """

    host: str | None = _setting("host")
    port: int | None = _setting("port")
    username: str | None = _setting("username")
    password: str | None = _setting("password", repr=False)
    tls: str | None = _setting("tls")
    timeout: float | None = _setting("timeout")
    heloName: str | None = _setting("heloName")
    clientCertificate: str | None = _setting("clientCertificate")
    clientKey: str | None = _setting("clientKey")
    caCertificates: str | None = _setting("caCertificates")
    sources: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen, hash=False
    )

    def __attrs_post_init__(self) -> None:
        """
        Refuse settings that cannot be used together.
        """
        _checkCoherent(attrs.asdict(self, recurse=False), self.sources)

    def keywords(self, hostKeyword: str = "smtphost") -> dict[str, Any]:
        """
        The keyword arguments that connect as these settings say, for
        C{sendmail(fromAddress=..., toAddresses=..., message=...,
        **settings.keywords())}, C{verifyConnection(**settings.keywords())}
        or C{Mailer(**settings.keywords(hostKeyword="host"))}.

        The host is always there (L{None} when not set: give C{endpoint}
        then); any other setting is left out when it is L{None}, so the
        callee's default applies.  With C{clientCertificate} or
        C{caCertificates} the files are read now and C{tlsOptions} is built
        with C{twisted.internet.ssl.optionsForClientTLS}: the server's
        certificate is verified against C{caCertificates}, or the system's
        trust store when it is not given (a client certificate does not turn
        verification off).

        @param hostKeyword: the name of the host argument: C{"smtphost"}
            for L{mailclient.sendmail} and L{mailclient.verifyConnection},
            C{"host"} for L{mailclient.Mailer}.
        @raise mailclient.errors.InvalidArgumentError: when a certificate
            or key file cannot be read or holds no usable PEM data, or the
            key does not match the certificate, or there is no host to
            verify the certificate against.
        """
        if hostKeyword not in ("smtphost", "host"):
            raise InvalidArgumentError(
                "hostKeyword", hostKeyword, "expected 'smtphost' or 'host'"
            )
        result: dict[str, Any] = {hostKeyword: self.host}
        for name in ("port", "username", "password", "tls", "timeout", "heloName"):
            value = getattr(self, name)
            if value is not None:
                result[name] = value
        if self.clientCertificate is not None or self.caCertificates is not None:
            result["tlsOptions"] = self._tlsOptions()
        return result

    def _tlsOptions(self) -> IOpenSSLClientConnectionCreator:
        """
        Client TLS options with our client certificate and trust roots.
        """
        setting = (
            "caCertificates" if self.clientCertificate is None else "clientCertificate"
        )
        if self.host is None:
            raise InvalidArgumentError(
                "host",
                None,
                f"{setting} needs the host name to verify the server's "
                "certificate against",
            )
        trustRoot = None
        if self.caCertificates is not None:
            certificates = self._certificates("caCertificates", self.caCertificates)
            trustRoot = trustRootFromCertificates(certificates)
        clientCertificate = None
        extra: dict[str, Any] = {}
        if self.clientCertificate is not None:
            clientCertificate, chain = self._clientCertificate(self.clientCertificate)
            if chain:
                extra["extraCertChain"] = [c.original for c in chain]
        return optionsForClientTLS(
            self.host,
            trustRoot=trustRoot,
            clientCertificate=clientCertificate,
            extraCertificateOptions=extra,
        )

    def _fail(self, setting: str, path: str, reason: str) -> InvalidArgumentError:
        """
        The error for a bad file given as C{setting}, saying where the
        setting came from.
        """
        where = _describe(self.sources.get(setting, _KEYWORD))
        return InvalidArgumentError(setting, path, f"{reason} (from {where})")

    def _read(self, setting: str, path: str) -> bytes:
        """
        The bytes of the file C{path} given as C{setting}.
        """
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise self._fail(
                setting, path, f"cannot read the file: {e.strerror or e}"
            ) from e

    def _certificates(self, setting: str, path: str) -> list[Certificate]:
        """
        Every PEM certificate in the file C{path} given as C{setting}, in
        order; at least one.
        """
        data = self._read(setting, path)
        try:
            loaded = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise self._fail(setting, path, "no valid PEM certificate in it") from e
        pem = serialization.Encoding.PEM
        return [Certificate.loadPEM(c.public_bytes(pem)) for c in loaded]

    def _clientCertificate(
        self, path: str
    ) -> tuple[PrivateCertificate, list[Certificate]]:
        """
        Our certificate with its key, and the certificates that follow it
        in its file (its chain).
        """
        certificates = self._certificates("clientCertificate", path)
        keySetting, keyPath = "clientCertificate", path
        if self.clientKey is not None:
            keySetting, keyPath = "clientKey", self.clientKey
        data = self._read(keySetting, keyPath)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError as e:
            raise self._fail(
                keySetting, keyPath, "the private key is encrypted: not supported"
            ) from e
        except (ValueError, UnsupportedAlgorithm) as e:
            raise self._fail(
                keySetting, keyPath, "no valid PEM private key in it"
            ) from e
        spki = (
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        leaf = certificates[0].original.to_cryptography()
        if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(
            *spki
        ):
            raise self._fail(
                keySetting, keyPath, "the private key does not match the certificate"
            )
        keyPEM = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        private = PrivateCertificate.loadPEM(certificates[0].dumpPEM() + keyPEM)
        return private, certificates[1:]


@attrs.frozen
class _ParsedURL:
    """
    What a URL says.

    @ivar values: the settings it gives, by name.
    @ivar scheme: its scheme, in lower case.
    @ivar shown: the URL with its password hidden, for errors.
    """

    values: dict[str, Any]
    scheme: str
    shown: str


def _parseURL(url: object) -> _ParsedURL:
    """
    Parse an C{smtp://}, C{smtp+starttls://} or C{smtps://} URL.
    """
    if not isinstance(url, str):
        raise InvalidArgumentError(
            "url", _HIDDEN, f"expected a str, not {type(url).__name__}"
        )
    shown = _redactURL(url)

    def fail(reason: str) -> InvalidArgumentError:
        return InvalidArgumentError("url", shown, reason)

    if _URL_FORBIDDEN.search(url):
        raise fail("must not contain spaces or control characters: percent-encode them")
    if "#" in url:
        raise fail("a fragment (#...) is not allowed: percent-encode '#' as %23")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise fail(
            "malformed: check the brackets around an IPv6 address, and "
            "percent-encode reserved characters in the user name and password"
        ) from None
    if parts.scheme not in _SCHEMES:
        raise fail(
            f"unknown scheme {parts.scheme!r}: expected smtp://, "
            "smtp+starttls:// or smtps://"
        )
    if "@" in parts.path or "@" in parts.query:
        raise fail(
            "'@' outside the user part: percent-encode '@', ':', '/', '?' and "
            "'#' in the user name and password"
        )
    if not parts.netloc:
        raise fail("no host: expected scheme://host")
    if parts.path not in ("", "/"):
        raise fail(f"a path is not allowed: {parts.path!r}")
    values: dict[str, Any] = {}

    def take(setting: str, text: str, where: str) -> None:
        try:
            values[setting] = _fromText(setting, text, where)
        except InvalidArgumentError as e:
            value = _HIDDEN if setting == "password" else e.value
            raise fail(f"{where} {value!r}: {e.reason}") from None

    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        for setting, text, given in (
            ("username", user, True),
            ("password", password, bool(colon)),
        ):
            if given:
                try:
                    decoded = unquote(text, errors="strict")
                except UnicodeDecodeError:
                    raise fail(f"the {setting} is not percent-encoded UTF-8") from None
                take(setting, decoded, f"the {setting}")
    if hostport.startswith("["):
        inside, _, rest = hostport[1:].partition("]")
        host = unquote(inside)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise fail(f"not an IPv6 address in brackets: {inside!r}") from None
        if rest and not rest.startswith(":"):
            raise fail(f"unexpected {rest!r} after the IPv6 address")
        colon, portText = rest[:1], rest[1:]
    else:
        host, colon, portText = hostport.partition(":")
    if not host:
        raise fail("no host: expected scheme://host")
    take("host", host, "the host")
    if colon:
        take("port", portText, "the port")
    if parts.query:
        try:
            query = parse_qs(
                parts.query,
                keep_blank_values=True,
                strict_parsing=True,
                errors="strict",
            )
        except ValueError:
            raise fail(
                "malformed query: expected name=value pairs joined by '&', "
                "percent-encoded as UTF-8"
            ) from None
        for name, texts in query.items():
            if name not in _QUERY:
                raise fail(
                    f"unknown query parameter {name!r}: expected {', '.join(_QUERY)}"
                )
            if len(texts) > 1:
                raise fail(f"query parameter {name!r} given {len(texts)} times")
            take(name, texts[0], f"?{name}=")
    implied = _SCHEMES[parts.scheme]
    if implied is not None:
        given = values.get("tls", implied)
        if given != implied:
            raise fail(_tlsConflict(parts.scheme, implied, given, "?tls="))
        values["tls"] = implied
    return _ParsedURL(values, parts.scheme, shown)


def _tlsConflict(scheme: str, implied: str, given: str, where: str) -> str:
    """
    Why the TLS mode C{given} (by C{where}) cannot go with a URL whose
    C{scheme} means C{implied}.
    """
    reason = f"the scheme {scheme}:// means tls={implied!r}, but {where} says {given!r}"
    if {implied, given} == {TLSMode.IMPLICIT.value, TLSMode.STARTTLS.value}:
        reason = f"implicit TLS and STARTTLS together: {reason}"
    return reason


def _fromEnvironment(environ: Mapping[str, str]) -> dict[str, Any]:
    """
    The settings given by C{MAILCLIENT_*} variables in C{environ}; an empty
    variable is not set.
    """
    values: dict[str, Any] = {}
    for setting, variable in ENVIRONMENT_VARIABLES.items():
        text = environ.get(variable)
        if text is None or text == "":
            continue
        if not isinstance(text, str):
            shown = _HIDDEN if setting == "password" else text
            raise InvalidArgumentError(
                variable, shown, f"expected a str, not {type(text).__name__}"
            )
        values[setting] = _fromText(setting, text, variable)
    return values


def loadSettings(
    url: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    host: str | None = None,
    port: int | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: str | TLSMode | None = None,
    timeout: float | None = None,
    heloName: str | None = None,
    clientCertificate: str | os.PathLike[str] | None = None,
    clientKey: str | os.PathLike[str] | None = None,
    caCertificates: str | os.PathLike[str] | None = None,
) -> SMTPSettings:
    """
    Merge connection settings from keyword arguments, a URL and the
    environment.

    Each setting is taken from the first level that gives it: a keyword
    argument that is not L{None}, then C{url}, then C{environ}.  The
    environment is the deployment's default and never conflicts with the
    URL, the caller's explicit choice: C{smtps://} wins over
    C{MAILCLIENT_TLS=starttls}.  A keyword C{tls} must agree with the mode
    the URL's scheme means, though: that is the caller contradicting
    itself.

    The URL is C{scheme://[user[:password]@]host[:port][/][?query]}:

      - C{smtp://} leaves C{tls} to the other levels or to the default rule
        of L{mailclient.sendmail} (implicit on port 465, STARTTLS required
        with credentials, opportunistic otherwise); C{smtp+starttls://}
        means C{tls="starttls"} and C{smtps://} C{tls="implicit"}.
      - The user name and password are percent-decoded (write C{@} as
        C{%40}, C{:} as C{%3A}); the host may be an IPv6 address in
        brackets, or an IDN, kept as given; the port is left to
        L{mailclient.sendmail}'s default when absent.
      - The query may give C{timeout}, C{heloName}, C{tls} (only the mode
        the scheme means), C{clientCertificate}, C{clientKey} and
        C{caCertificates}, each once, form-decoded (C{+} is a space).
      - A path, a fragment, an unknown or repeated parameter, and an empty
        value are errors, never ignored.  Errors show the URL with its
        password replaced by C{****}.

    The environment variables are those of L{ENVIRONMENT_VARIABLES}
    (C{MAILCLIENT_HOST}, C{MAILCLIENT_PORT}, ...); an empty one is not set,
    and other C{MAILCLIENT_*} variables are ignored.

    Nothing is read but C{url} and C{environ}: no network, no DNS, no file.

    @param url: an C{smtp://}, C{smtp+starttls://} or C{smtps://} URL, or
        L{None} (or C{""}) for none.
    @param environ: the environment to read (default: C{os.environ}); pass
        C{{}} to ignore it.
    @param host: the server's host name.
    @param port: the server's port, 1-65535.
    @param username: the user name for AUTH.
    @param password: the password for AUTH.
    @param tls: a L{TLSMode} or its value.
    @param timeout: the longest single wait, in seconds.
    @param heloName: our name in EHLO/HELO.
    @param clientCertificate: the PEM file of our client certificate (and
        its key unless C{clientKey} is given).
    @param clientKey: the PEM file of the client certificate's key.
    @param caCertificates: the PEM bundle of trust roots to verify the
        server against, instead of the system's.
    @return: the merged settings, with their L{SMTPSettings.sources}.
    @raise mailclient.errors.InvalidArgumentError: for a bad value (its
        C{argument} is the keyword, C{"url"} or the variable's name) or
        settings that conflict.
    """
    keywords: dict[str, Any] = {}
    for setting, value in (
        ("host", host),
        ("port", port),
        ("username", username),
        ("password", password),
        ("tls", tls),
        ("timeout", timeout),
        ("heloName", heloName),
        ("clientCertificate", clientCertificate),
        ("clientKey", clientKey),
        ("caCertificates", caCertificates),
    ):
        if value is not None:
            keywords[setting] = _CHECKS[setting](value, setting)
    parsed = _parseURL(url) if url is not None and url != "" else None
    if parsed is not None and "tls" in keywords:
        implied = _SCHEMES[parsed.scheme]
        if implied is not None and keywords["tls"] != implied:
            raise InvalidArgumentError(
                "tls",
                keywords["tls"],
                _tlsConflict(parsed.scheme, implied, keywords["tls"], "the keyword"),
            )
    fromEnvironment = _fromEnvironment(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in _CHECKS:
        if setting in keywords:
            values[setting], sources[setting] = keywords[setting], _KEYWORD
        elif parsed is not None and setting in parsed.values:
            values[setting], sources[setting] = parsed.values[setting], _URL
        elif setting in fromEnvironment:
            values[setting] = fromEnvironment[setting]
            sources[setting] = _ENVIRONMENT + ENVIRONMENT_VARIABLES[setting]
    _checkCoherent(values, sources)
    return SMTPSettings(**values, sources=sources)
