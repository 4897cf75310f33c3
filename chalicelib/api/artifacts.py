"""Artifact routes: a job's outputs written with `ctx.artifact(...)`."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api.http import Call, validate
from chalicelib.api.requests import ListArtifactsQuery
from chalicelib.api.routing import router
from chalicelib.composition import container
from chalicelib.defaults import PRESIGNED_URL_TTL_S
from chalicelib.domain.errors import ArtifactNotFoundError, JobNotFoundError
from chalicelib.domain.job import is_plausible_job_id, shown_id
from chalicelib.domain.media_types import UTF8_TEXT, is_media_type
from chalicelib.lifecycle import JobLifecycle
from chalicelib.ports import ArtifactPage

artifacts_api = Blueprint(__name__)

# An artifact's bytes are a job's output, often built from a tenant's input: whatever its content
# type, a browser saves it as a file rather than showing it as a page. Inline ones come from the
# API's own origin (where the dashboard keeps its token), so they are also never sniffed and, if
# shown anyway, sandboxed with nothing allowed (no script, no requests).
INLINE_ARTIFACT_CSP = "sandbox; default-src 'none'"


def attachment(name: str) -> str:
    """The Content-Disposition of artifact `name` (a checked name: no quote or backslash in it)."""
    return f'attachment; filename="{name}"'


route = router(artifacts_api)


def _tenant_job(lifecycle: JobLifecycle, call: Call, job_id: str) -> str:
    """The id of the caller's job `job_id`, from its record: no object of it is read."""
    if not is_plausible_job_id(job_id):
        raise JobNotFoundError(f"job {shown_id(job_id)} not found")
    return lifecycle.get(call.user.tenant, job_id, fetch=()).id


@route("/jobs/{job_id}/artifacts", methods=["GET"])
def list_artifacts(call: Call, job_id: str) -> Any:
    """A page of the job's artifacts, by name; `next_cursor` while more follow."""
    params = validate(ListArtifactsQuery, call.query())
    services = container()
    job_id = _tenant_job(services.lifecycle, call, job_id)
    store = services.artifacts
    page = store.list(job_id, limit=params.limit, cursor=params.cursor) if store is not None else ArtifactPage([])
    return {"job_id": job_id, "artifacts": [i.public() for i in page.artifacts], "next_cursor": page.cursor}


@route("/jobs/{job_id}/artifacts/{name}", methods=["GET"])
def get_artifact(call: Call, job_id: str, name: str) -> Any:
    """Inline (small UTF-8 text) artifacts come back as themselves with their content type;
    those in S3 as JSON with a presigned GET `url` valid for a few minutes. Both as attachments."""
    services = container()
    job_id = _tenant_job(services.lifecycle, call, job_id)
    if services.artifacts is None:
        raise ArtifactNotFoundError.of(job_id, name)
    artifact = services.artifacts.get(job_id, name)
    if artifact.content is not None:
        # Inline artifacts are UTF-8 text as written (adapters/artifacts.keeps_inline). The
        # content type was checked when written; one that is not a media type (stored before
        # the check) is never sent as a header: the body goes as the UTF-8 text it is served as
        # (a binary type would make Chalice refuse a text body).
        content_type = artifact.info.content_type
        return Response(
            body=artifact.content.decode("utf-8", errors="replace"),
            status_code=200,
            headers={"Content-Type": content_type if is_media_type(content_type) else UTF8_TEXT,
                     "Cache-Control": "no-store",
                     "Content-Disposition": attachment(artifact.info.name),
                     "X-Content-Type-Options": "nosniff",
                     "Content-Security-Policy": INLINE_ARTIFACT_CSP},
        )
    url = services.blobs.presigned_url(artifact.blob_key, PRESIGNED_URL_TTL_S,
                                       content_disposition=attachment(artifact.info.name))
    return {**artifact.info.public(), "url": url, "expires_in": PRESIGNED_URL_TTL_S}
