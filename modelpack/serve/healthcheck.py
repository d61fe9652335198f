"""`python3 -m modelpack.serve.healthcheck`: the image's HEALTHCHECK, with no curl in the base image.

Exits 0 when GET http://127.0.0.1:$PORT/v2/health/ready answers 200 within 3 s, else 1 with the reason.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check(port: int, timeout: float = 3.0) -> str | None:
    """None when the server is ready, else why not."""
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url} unreachable: {exc}"


def main() -> int:
    port = int(os.environ.get("PORT") or 8080)
    reason = check(port)
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
