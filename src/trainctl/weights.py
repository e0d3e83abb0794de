"""Find weights files: local paths checked, URLs fetched once into a cache.

ppdet downloads URLs by itself, with retries that hang for minutes when the
machine is offline. trainctl resolves every weights value to a local file
before ppdet sees it:

- a URL (http://, https://, ppdet://) is downloaded once into
  `~/.cache/trainctl/weights/` (`$TRAINCTL_CACHE/weights/` when set), under
  its file name, by writing a temporary file and renaming it (so a killed
  download never leaves a truncated file that looks cached). A file lock
  makes several workers on one host download it once. Offline, it fails
  within seconds with a UserError that says how to go on without it.
- a local path is accepted with or without the `.pdparams` suffix.

Pure Python: no paddle.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import urllib.parse
from pathlib import Path

from trainctl.errors import UserError

PPDET_URL_PREFIX = "https://paddledet.bj.bcebos.com/"  # what ppdet's "ppdet://" scheme stands for
SUFFIX = ".pdparams"

# role -> how to do without the file (the hint of the error)
_HINTS = {
    "pretrain_weights": "train without them with --no-pretrained (or -o pretrain_weights=)",
    "weights": "pass the path of a .pdparams file written by training (e.g. output/<config>/model_final)",
    "resume": "pass a checkpoint written by training (e.g. output/<config>/0), or --resume auto",
}
_LABELS = {"pretrain_weights": "pretrained weights", "weights": "weights", "resume": "checkpoint"}


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://", "ppdet://"))


def cache_dir() -> Path:
    root = os.environ.get("TRAINCTL_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "trainctl"
    return base / "weights"


def cached_path(url: str, directory: Path | None = None) -> Path:
    """Where the cache keeps the file of a URL (its file name in the cache directory)."""
    name = os.path.basename(urllib.parse.urlparse(_expand_scheme(url)).path)
    if not name:
        raise UserError(f"weights URL has no file name: {url}", hint="give a URL that ends in a .pdparams file")
    return (directory or cache_dir()) / name


def strip_suffix(path: str) -> str:
    return path[: -len(SUFFIX)] if path.endswith(SUFFIX) else path


def resolve_weights(
    value: str | None,
    role: str = "weights",
    cache: str | os.PathLike | None = None,
    timeout: float = 10.0,
) -> str | None:
    """Return a local .pdparams path for a weights value, or None for an empty value.

    role names the config key or flag ("pretrain_weights", "weights", "resume")
    and picks the hint of the error message.
    """
    if value is None or str(value).strip() == "":
        return None
    value = str(value).strip()
    if is_url(value):
        return str(_fetch(value, Path(cache) if cache else cache_dir(), role, timeout))
    stem = strip_suffix(value)
    for candidate in (stem + SUFFIX, value):
        if os.path.isfile(candidate):
            return candidate
    raise UserError(f"{_LABELS.get(role, role)} file not found: {stem + SUFFIX}", hint=_HINTS.get(role, _HINTS["weights"]))


def resolve_pretrained(value: str | None, cache_dir: str | os.PathLike | None = None, timeout: float = 10.0) -> str | None:
    """resolve_weights for a config's pretrain_weights."""
    return resolve_weights(value, "pretrain_weights", cache_dir, timeout)


def _expand_scheme(url: str) -> str:
    if url.startswith("ppdet://"):
        return PPDET_URL_PREFIX + url[len("ppdet://") :]
    return url


def _fetch(url: str, directory: Path, role: str, timeout: float) -> Path:
    target = cached_path(url, directory)
    if target.is_file():
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the weights cache {directory}: {exc.strerror}", hint="set TRAINCTL_CACHE to a writable directory") from exc
    with open(directory / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker on this host may be downloading it
        if target.is_file():
            return target
        import urllib.error  # only when downloading: keeps --dry-run start-up small

        try:
            _download(_expand_scheme(url), target, timeout)
        except (OSError, urllib.error.URLError, TimeoutError, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = getattr(exc, "reason", None) or exc
            raise UserError(
                f"cannot download {_LABELS.get(role, role)} {url} ({reason})",
                hint=f"{_HINTS.get(role, _HINTS['weights'])}, or put the file at {target}",
            ) from exc
    return target


def _download(url: str, target: Path, timeout: float) -> None:
    import urllib.request

    from trainctl.fsutil import atomic_target

    parsed = urllib.parse.urlparse(url)
    proxied = parsed.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parsed.hostname or "")
    if parsed.hostname and not proxied and not _resolves(parsed.hostname, timeout):
        # getaddrinfo ignores socket timeouts; without DNS it can block for long
        raise OSError(f"cannot resolve host {parsed.hostname} within {timeout:g} s")
    with atomic_target(target, suffix=".part") as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, 1 << 20)
            size = out.tell()
        if expected is not None and int(expected) != size:
            raise OSError(f"download incomplete: {size} of {expected} bytes")


def _resolves(host: str, timeout: float) -> bool:
    import socket
    import threading

    result: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None)
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])
