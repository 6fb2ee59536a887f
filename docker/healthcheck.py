"""Container healthcheck: healthy when the URL answers with any HTTP status below 500.

    python docker/healthcheck.py http://127.0.0.1:8000/admin/login/

A redirect or a 400 for an unlisted Host still proves the server is serving;
only no answer, a timeout or a server error is unhealthy. (The slim image has no curl.)
"""

import sys
import urllib.error
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main(url: str) -> int:
    opener = urllib.request.build_opener(NoRedirect)
    # As the TLS proxy would, so production settings serve the page instead of redirecting.
    # The URL is the container's own (HEALTHCHECK's argument), http.
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})  # noqa: S310
    try:
        status = opener.open(request, timeout=5).status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"{url}: {error}")
        return 1
    print(f"{url}: {status}")
    return 0 if status < 500 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
