"""What a kept connection saves the ERP bridge: `python -m bench.webhook_connections`.

POSTs `--posts` event-sized bodies a round (about 700 bytes, a status event's) through the
bridge's own HttpWebhookSender to a loopback receiver in a subprocess of its own (so none of
its CPU is counted here), over HTTPS (a certificate from a throwaway CA, as `trustme` makes
one) and over plain HTTP, two ways: to a receiver that keeps the connection open (`kept`) and
to one that answers `Connection: close` (`closed`: a connection and, over HTTPS, a TLS
handshake a POST, as every POST paid before the sender kept its connection). Prints, per
scheme and way, the median wall time and this process's CPU (time.process_time) a POST, and
the connections the receiver accepted. Loopback has no round trip to speak of: on a network
each new connection adds one round trip for TCP and one for TLS 1.3 before the POST's own.
Options: --posts N (200), --rounds N (5), --json. Not a test: nothing here is timed by `make test`."""
from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chalicelib.adapters.webhook import HttpWebhookSender
from tests.support.counting_receiver import CountingReceiver

BODY = b'{"event_id":"' + b"e" * 36 + b'","detail":"' + b"x" * 640 + b'"}'


def serve(cert_dir: str) -> None:
    """The receiver (`--serve DIR`): HTTPS on one port, HTTP on another, printed as one JSON
    line with a third, plain, that answers a GET with the connections each has accepted;
    `/close` answers with `Connection: close`. Serves until stdin closes."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(Path(cert_dir) / "server.pem")
    receivers = {"https": CountingReceiver(tls=tls), "http": CountingReceiver()}

    class Counts(BaseHTTPRequestHandler):  # on a port of its own: asking is not counted
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            text = json.dumps({scheme: r.connections for scheme, r in receivers.items()}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: Any) -> None:
            return

    control = ThreadingHTTPServer(("127.0.0.1", 0), Counts)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({**{scheme: r.base for scheme, r in receivers.items()},
                      "control": f"http://127.0.0.1:{control.server_address[1]}"}), flush=True)
    sys.stdin.read()


def measure(posts: int = 200, rounds: int = 5) -> dict[str, Any]:
    import trustme

    authority = trustme.CA()
    with tempfile.TemporaryDirectory() as cert_dir:
        server_pem = authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem
        server_pem.write_to_path(str(Path(cert_dir) / "server.pem"))
        receiver = subprocess.Popen([sys.executable, "-m", "bench.webhook_connections", "--serve", cert_dir],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            bases = json.loads(receiver.stdout.readline())
            client_tls = ssl.create_default_context()
            authority.configure_trust(client_tls)
            figures: dict[str, Any] = {}
            for scheme in ("https", "http"):
                for way, path in (("kept", "/ok"), ("closed", "/close")):
                    walls, cpus = [], []
                    before = _count(bases["control"], scheme)
                    for _ in range(rounds):
                        sender = HttpWebhookSender(tls=client_tls)
                        wall, cpu = time.perf_counter(), time.process_time()
                        for _ in range(posts):
                            sender.post(bases[scheme] + path, BODY, {"Content-Type": "application/json"})
                        walls.append((time.perf_counter() - wall) / posts * 1000)
                        cpus.append((time.process_time() - cpu) / posts * 1000)
                    figures[f"{scheme} {way}"] = {
                        "wall_ms_per_post": round(statistics.median(walls), 3),
                        "cpu_ms_per_post": round(statistics.median(cpus), 3),
                        "connections": _count(bases["control"], scheme) - before,
                        "posts": posts * rounds,
                    }
            return figures
        finally:
            receiver.stdin.close()
            receiver.wait(10)


def _count(control: str, scheme: str) -> int:
    """The connections the receiver has accepted on `scheme`."""
    with urllib.request.urlopen(control, timeout=5) as answer:
        return json.loads(answer.read())[scheme]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_connections")
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", metavar="DIR")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    figures = measure(args.posts, args.rounds)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{args.posts} POSTs a round, {args.rounds} rounds, a {len(BODY)}-byte body")
    print(f"{'':<14}{'wall ms/POST':>14}{'CPU ms/POST':>13}{'connections':>13}")
    for name, row in figures.items():
        print(f"{name:<14}{row['wall_ms_per_post']:>14}{row['cpu_ms_per_post']:>13}{row['connections']:>13}")


if __name__ == "__main__":
    main()
