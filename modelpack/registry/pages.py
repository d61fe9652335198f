"""Link-header pagination (tag lists, referrers), bounded whatever the registry answers.

A next-page link must stay on the registry's origin (a page elsewhere would get no credentials and
could feed us tags of its choosing), never revisit a page already read (a link to itself looped
forever), and the whole listing is bounded in pages and in bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import httpx

from modelpack.errors import RegistryError
from modelpack.registry.transport import RegistryClient

MAX_PAGES = 1000
MAX_LIST_BYTES = 32 * 1024 * 1024  # all pages together: some million tags


def pages(
    client: RegistryClient,
    path: str,
    *,
    what: str,
    scopes: Sequence[str],
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    page_limit: int = MAX_LIST_BYTES,
) -> Iterator[httpx.Response]:
    """Each page's response, read whole; the next is fetched only when asked for, and only after a
    200 that links to one. `what` names the listing in errors ("tag list of host/repo")."""
    url = client.url(path)
    seen: set[str] = set()
    total = count = 0
    while True:
        response = client.send("GET", url, scopes=scopes, headers=headers, params=params, max_body=page_limit)
        count += 1
        seen.update(str(r.request.url) for r in (*response.history, response))
        total += len(response.content)
        if total > MAX_LIST_BYTES:
            raise RegistryError(
                f"{what} is over {MAX_LIST_BYTES} bytes across {count} pages; refused",
                hint="the registry or a proxy in front of it is misbehaving",
            )
        yield response
        link = response.links.get("next", {}).get("url") if response.status_code == 200 else None
        if not link:
            return
        following = response.request.url.join(link)
        shown = str(following.copy_with(query=None))
        if not client.on_registry(following):
            raise RegistryError(
                f"{what}: the next page is on another host ({shown}); refused",
                hint="pages must stay on the registry: check its configured external URL",
            )
        if str(following) in seen:
            raise RegistryError(
                f"{what}: the next page links back to a page already read ({shown}); stopped",
                hint="the registry's pagination is broken",
            )
        if count >= MAX_PAGES:
            raise RegistryError(
                f"{what} goes on past {MAX_PAGES} pages; stopped",
                hint="the registry's pagination does not end",
            )
        url, params = str(following), None  # the link carries its own query
