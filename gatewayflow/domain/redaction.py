"""What may be printed of an address: never the password a URI carries."""

from urllib.parse import urlsplit, urlunsplit


def redact_uri(uri: str | None) -> str:
    """A URI as it may be printed: any password replaced by `***`."""
    if not uri:
        return uri or ""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
