"""Serve ministack's ASGI app with uvicorn on httptools: run by the emulator's own virtualenv
(`.venv-emulator/bin/python scripts/emulator_server.py HOST PORT LOG_LEVEL`), started and stopped
by `scripts/emulator.py`.

ministack's own entry point serves the same app with hypercorn, whose HTTP/1.1 parser (h11) is
pure Python: about a third of the emulator's CPU went to serving HTTP. uvicorn parses with
httptools (C) and costs the emulator 0.52-0.77 ms of CPU a request against hypercorn's
0.89-1.02 (SendMessage, PutItem and a two-item TransactWriteItems from four threads); see
docs/performance.md. The app, its services and its lifespan (the event-source poller, the
schedules) are ministack's, unchanged. What its entry point does besides serving is done here
too: the soft limit on open files raised to the hard one, so a burst of connections does not
hit 1,024.

One of ministack's warnings is left out: its KMS, loaded at the first deploy, warns that signing
will fail without the `cryptography` package. jobpipe uses no KMS key, and installing the
package here would not be free: the function processes import the emulator's botocore from
this virtualenv, and PyJWT (the API's tokens) loads `cryptography` whenever it can import it,
about 9 MB in every function process (73 MB more for the stack in `make bench`'s cold burst),
which no Lambda runtime on AWS has. The warning would only read like a broken stack at the top
of `make run`."""
import logging
import resource
import sys

import uvicorn

# Seconds an idle keep-alive connection stays open (ministack's own: botocore's pooled
# connections are reused across a stack's whole run), and what a stop waits for requests in
# flight before it cancels them (the emulator's stop escalates to SIGKILL after 10 s).
KEEP_ALIVE_S = 75
GRACEFUL_SHUTDOWN_S = 3


class _WithoutKmsCryptographyWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("cryptography package not installed")


def main(host: str, port: int, log_level: str) -> None:
    logging.getLogger("kms").addFilter(_WithoutKmsCryptographyWarning())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvicorn.run(
        "ministack.app:app",
        host=host,
        port=port,
        http="httptools",
        loop="asyncio",
        lifespan="on",
        log_level=log_level.lower(),
        access_log=False,
        proxy_headers=False,  # what the request carries reaches ministack as sent, as with hypercorn
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
