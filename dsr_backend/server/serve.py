"""``dsr serve``: options, the token, the devices, and uvicorn."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os

import torch

from ..errors import InvalidInputError, MissingDependencyError

logger = logging.getLogger(__name__)

MB = 1024 * 1024


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``dsr serve``."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; reach it by SSH tunnel)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--data-dir", default="dsr-data", help="database and artifacts (default ./dsr-data)")
    parser.add_argument("--token-file", help="file holding the bearer token; created with a new random token "
                                             "(mode 600) when missing (default DATA_DIR/token)")
    parser.add_argument("--device", default="auto",
                        help="training devices, comma-separated: cpu, cuda, cuda:0,cuda:1, or auto (default: "
                             "every CUDA GPU, else the CPU)")
    parser.add_argument("--jobs-per-device", type=int, default=1, help="concurrent training jobs per device")
    parser.add_argument("--checkpoint-every", type=int, default=100,
                        help="training steps between checkpoints, what a restart may redo (default 100)")
    parser.add_argument("--max-upload-mb", type=float, default=256.0, help="size cap of one upload (default 256)")
    parser.add_argument("--max-resolution", type=int, default=256, help="largest surface query grid (default 256)")
    parser.add_argument("--max-queries", type=int, default=2, help="surface queries computed at once (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (with --ssl-keyfile)")
    parser.add_argument("--ssl-keyfile", help="private key of --ssl-certfile")
    parser.add_argument("--no-docs", action="store_true", help="do not serve the API docs at /docs")


def training_devices(spec: str) -> list[str]:
    """``auto`` -> every CUDA GPU (else ``cpu``); ``cuda`` -> ``cuda:0``; a comma-separated list otherwise."""
    if spec == "auto":
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    devices = ["cuda:0" if item.strip() == "cuda" else item.strip() for item in spec.split(",") if item.strip()]
    for device in devices:
        if device != "cpu" and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise InvalidInputError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
        if device != "cpu" and int(device[5:]) >= torch.cuda.device_count():
            raise InvalidInputError(f"device {device} is not available ({torch.cuda.device_count()} CUDA GPUs)")
    return devices or ["cpu"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> None:
    """Run the service until interrupted."""
    # FastAPI and uvicorn are the optional "server" extra: imported here so that the rest of dsr runs without them
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError('dsr serve needs FastAPI and uvicorn: pip install "pymol-dsr[server]"') from None

    from .app import create_app
    from .auth import load_or_create_token
    from .jobs import JobService, ServiceConfig

    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise InvalidInputError("--ssl-certfile and --ssl-keyfile go together")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    os.umask(0o077)  # everything the service writes is its owner's alone (this process only serves)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    token_file = args.token_file or os.path.join(data_dir, "token")
    token, created = load_or_create_token(token_file)
    config = ServiceConfig(data_dir, training_devices(args.device), max(1, args.jobs_per_device),
                           max(1, args.checkpoint_every), int(args.max_upload_mb * MB), args.max_resolution,
                           max(1, args.max_queries))
    service = JobService(config)
    scheme = "https" if args.ssl_certfile else "http"
    print(f"dsr serve: {scheme}://{args.host}:{args.port} (API docs at /docs), data in {data_dir}, training on "
          f"{', '.join(config.devices)}; token {'written to' if created else 'read from'} {token_file}", flush=True)
    if not is_loopback(args.host) and not args.ssl_certfile:
        logger.warning("listening on %s without TLS: the token and the data travel in clear text; use an SSH "
                       "tunnel or a trusted network, or --ssl-certfile/--ssl-keyfile", args.host)
    uvicorn.run(create_app(service, token, docs=not args.no_docs), host=args.host, port=args.port,
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile, log_level="warning")
