"""Canonical URLs: one spelling per page, so the same page reached two ways is stored once.

Normalised: scheme and host lower-cased, the host IDNA-encoded, default ports and user info
dropped, an empty path made "/", the fragment dropped, tracking parameters (utm_*, fbclid,
gclid, ...) removed and the remaining query parameters sorted. The content hash of the normalised
text (atlas.pipeline.document) catches the same text under different URLs; the store marks an item
whose canonical URL or content hash is already stored as a `duplicate` of the original.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from atlas.pipeline.base import ItemContext

TRACKING_PREFIXES = ("utm_", "mtm_", "pk_")
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "igshid", "mc_cid", "mc_eid", "_ga", "_gl"}
    | {"ref_src", "ref_url", "spm", "_hsenc", "_hsmi", "mkt_tok", "oly_enc_id", "oly_anon_id", "vero_id"}
)
DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str) -> str:
    """The canonical spelling of an http(s) URL (see the module docstring); ValueError if unparsable."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        host = host.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)
    ]
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(sorted(query)), ""))


def same_site(a: str, b: str) -> bool:
    return (urlsplit(a).hostname or "").lower() == (urlsplit(b).hostname or "").lower()


class Dedupe:
    """Choose and normalise the canonical URL: the page's own if on the same host, else the final URL.

    A page may only claim a canonical URL on its own host: otherwise any page could mark another
    site's articles as duplicates of itself.
    """

    name: str = "dedupe"
    kinds: tuple[str, ...] = ("url", "feed")

    async def run(self, ctx: ItemContext) -> None:
        if ctx.result is not None:
            return  # not modified since the fetch that stored it
        final = str(ctx.extra.get("final_url") or ctx.payload["url"])
        claimed = ctx.canonical_url
        chosen = (
            claimed
            if claimed and claimed.startswith(("http://", "https://")) and same_site(claimed, final)
            else final
        )
        try:
            ctx.canonical_url = canonical_url(chosen)
        except ValueError:
            ctx.canonical_url = canonical_url(final)
