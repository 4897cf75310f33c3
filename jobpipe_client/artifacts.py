"""A job's artifacts as the client reads them: the name rule, the shape of a listing's page and of
a download link, and the fetch of an artifact kept in S3 from the presigned URL the API gives.

GET /jobs/{id}/artifacts/{name} answers an inline artifact as itself, as an attachment (its
Content-Disposition says so), whatever its content type: a JSON artifact is never read as a link.
Any other 2xx must be the JSON of a link, `{..., "url", "expires_in"}`, whose URL is fetched
as it is: it carries its own signature, so the token is not sent there (S3 would refuse a second
authorization, and the token is no business of S3's)."""
from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import requests
import requests.auth
import urllib3

from jobpipe_client.errors import ArtifactDownloadError, JobpipeInputError

# The API's rule (chalicelib/adapters/artifacts.py, docs/jobs.md): a name outside it names no
# artifact, and one with '/', '%' or '..' in it would reach another path.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
ARTIFACT_PAGE_LIMIT = 1000  # artifacts per GET /jobs/{id}/artifacts page: the most the API gives
# Read from S3 and written out at a time: an artifact may be gigabytes, and is never held whole.
DOWNLOAD_PIECE_BYTES = 1024 * 1024
# S3's error document: <Error><Code>AccessDenied</Code><Message>Request has expired</Message>...
_S3_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")


def artifact_name(name: str) -> str:
    """`name` when it is an artifact name (1-128 letters, digits, '.', '_' and '-', starting
    with a letter or digit); JobpipeInputError, nothing sent, otherwise."""
    if not (isinstance(name, str) and NAME.fullmatch(name)):
        shown = name if isinstance(name, str) else repr(name)
        raise JobpipeInputError("artifact names are 1-128 characters of letters, digits, '.', '_' and '-', "
                                f"starting with a letter or digit, not {shown[:150]!r}")
    return name


def is_artifact_page(value: Any) -> bool:
    """GET /jobs/{id}/artifacts's answer: named artifacts and the cursor of the next page, if any."""
    return (isinstance(value, dict) and isinstance(value.get("artifacts"), list)
            and all(isinstance(a, dict) and isinstance(a.get("name"), str) for a in value["artifacts"])
            and isinstance(value.get("next_cursor") or "", str))


def is_download_link(value: Any) -> bool:
    """An artifact in S3 as GET /jobs/{id}/artifacts/{name} answers it: an http(s) `url` with a
    host, and its `size` in bytes when given."""
    if not (isinstance(value, dict) and isinstance(value.get("url"), str)):
        return False
    size = value.get("size")
    try:
        parts = urlsplit(value["url"])
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and (size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 0)))


def is_inline(response: requests.Response) -> bool:
    """True when the answer is the artifact itself: a 2xx served as an attachment."""
    disposition = response.headers.get("Content-Disposition", "")
    return 200 <= response.status_code < 300 and disposition.strip().lower().startswith("attachment")


class _NoAuth(requests.auth.AuthBase):
    """No authorization: the link is signed. Given explicitly, so neither the session's bearer
    auth nor a ~/.netrc login is put on the request in its place."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


def fetch(session: requests.Session, link: dict[str, Any], job_id: str, name: str, timeout_s: float,
          write: Callable[[bytes], Any]) -> int:
    """Streams the bytes at `link["url"]` into `write`, DOWNLOAD_PIECE_BYTES at most at a time, and
    returns how many there were. The connection and the wait for the headers are bounded by
    `timeout_s`, and so is each wait for the next piece of the body (an artifact takes as long as
    its size needs, as long as it keeps coming). ArtifactDownloadError when S3 refuses it, gives
    no answer, or sends other than `link["size"]` bytes (more: as soon as they pass it). What
    `write` raises (a full disk, a closed pipe) passes through as it is."""
    url = link["url"]
    parts = urlsplit(url)
    where = urlunsplit(parts._replace(query="", fragment=""))
    size = link.get("size")

    def failed(reason: str, status: Any = None, code: Any = None) -> ArtifactDownloadError:
        return ArtifactDownloadError(job_id, name, where, reason, status, code)

    with _from_s3(failed, timeout_s):
        response = session.request("GET", url, timeout=timeout_s, stream=True, auth=_NoAuth(),
                                   headers={"Authorization": None, "Accept": None})
    with contextlib.closing(response):
        pieces = response.iter_content(DOWNLOAD_PIECE_BYTES)
        if response.status_code != 200:
            with _from_s3(failed, timeout_s):
                text = next(pieces, b"")[:4096].decode("utf-8", errors="replace")
            code, message = _S3_CODE.search(text), _S3_MESSAGE.search(text)
            said = " ".join(f"{code.group(1) if code else ''}: {message.group(1) if message else ''}".strip(": ").split())
            raise failed(f"HTTP {response.status_code}{' ' + said if said else ''}",
                         response.status_code, code.group(1) if code else None)
        count = 0
        while True:
            with _from_s3(failed, timeout_s):
                piece = next(pieces, None)
            if piece is None:
                break
            count += len(piece)
            if size is not None and count > size:  # never more of it than the artifact holds
                raise failed(f"S3 sent more than its {size} bytes")
            write(piece)
    if size is not None and count < size:
        raise failed(f"S3 sent {count} of its {size} bytes")
    return count


@contextlib.contextmanager
def _from_s3(failed: Callable[..., ArtifactDownloadError], timeout_s: float) -> Iterator[None]:
    """A requests failure while S3 is asked or read, as the ArtifactDownloadError it is."""
    try:
        yield
    except requests.Timeout:
        raise failed(f"no answer within {timeout_s:g} s") from None
    except requests.ConnectionError as exc:
        if isinstance(exc.args[0] if exc.args else None, urllib3.exceptions.ReadTimeoutError):
            raise failed(f"no answer within {timeout_s:g} s") from None  # the body stopped coming
        raise failed(f"could not connect ({type(exc).__name__})") from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
        raise failed(f"its answer was cut off or could not be read ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        raise failed(f"the request failed ({type(exc).__name__})") from None
