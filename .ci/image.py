#!/usr/bin/env python3
"""Build the tierline container image from the real Dockerfile with buildah (no daemon needed).

    python3 .ci/image.py build [--tag tierline:latest]
    python3 .ci/image.py info  [--tag tierline:latest]

The base image named in the Dockerfile (``python:3.11-slim``) is pulled when a registry answers.
When none does, a stand-in is built from Debian packages (debootstrap, bookworm, Python 3.11) and
committed under the base image's own name, so the Dockerfile builds unchanged; the output says so.
The debootstrap tree is cached as a tarball in ``$TIERLINE_IMAGE_CACHE`` (default
``/var/cache/tierline-image``) and the stand-in in buildah's storage, so later runs reuse both.
docs/operations.md describes the stand-in and its limits. Standard library only: runs with the
machine's ``python3`` before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("TIERLINE_IMAGE_CACHE", "/var/cache/tierline-image"))
STORAGE = ["--storage-driver", "vfs"]
SUITE = "bookworm"  # Debian 12 ships Python 3.11, the Python of python:3.11-slim
STAND_IN_OK = re.compile(r"^(docker\.io/(library/)?)?python:3\.11(\.\d+)?-slim(-bookworm)?$")
RECIPE = f"debootstrap --variant=minbase --include=python3,python3-venv,python3-pip {SUITE} (recipe 1)"
LABEL_STAND_IN = "org.tierline.stand-in"
LABEL_KEY = "org.tierline.stand-in.key"
TARBALL = CACHE / f"{SUITE}-minbase-python3.tar"
#: Removed from the stand-in tree, as Debian's slim images leave them out.
SLIM_PATHS = ("usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "var/cache/apt")
DPKG_SLIM = """\
# Like Debian's slim images: no manuals, translations or documentation besides copyright files.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""
#: pip settings that decide how the package index is reached; others (local wheel directories,
#: constraints files) describe the host, not the network, and stay out of the stand-in.
PIP_NETWORK_KEYS = (
    "index-url",
    "extra-index-url",
    "trusted-host",
    "proxy",
    "timeout",
    "default-timeout",
    "retries",
)
HOST_PIP_FILES = (
    Path("/etc/xdg/pip/pip.conf"),
    Path("/etc/pip.conf"),
    Path.home() / ".pip/pip.conf",
    Path.home() / ".config/pip/pip.conf",
)
CA_BUNDLE_IN_IMAGE = "/etc/ssl/certs/ca-certificates.crt"


def say(message: str) -> None:
    print(f"image: {message}", flush=True)


def die(message: str) -> NoReturn:
    print(f"image: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def run(
    argv: list[str], *, quiet: bool = False, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure show its output and stop."""
    result = subprocess.run(argv, capture_output=quiet, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        die(f"`{' '.join(argv[:4])} …` exited with {result.returncode}")
    return result


def buildah(*args: str, quiet: bool = True) -> str:
    return run(["buildah", *STORAGE, *args], quiet=quiet).stdout or ""


# ---------------------------------------------------------------------------------------------
# Tools


def ensure_tools() -> None:
    if os.geteuid() != 0:
        die("building runs buildah with --isolation chroot and the vfs driver, which needs root")
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        die(f"{' and '.join(missing)} missing and no apt-get to install them")
    say(f"installing {' '.join(missing)} with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        if subprocess.run(argv, env=env, check=False).returncode != 0:
            die(f"`{' '.join(argv)}` failed")


# ---------------------------------------------------------------------------------------------
# The base image


def dockerfile_bases(dockerfile: Path) -> list[str]:
    """The external images the Dockerfile builds FROM (stage names left out), in order."""
    stages: set[str] = set()
    bases: list[str] = []
    for match in re.finditer(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile.read_text(), re.MULTILINE | re.I):
        image, stage = match.group(1), match.group(2)
        if image.lower() not in stages and image not in bases:
            bases.append(image)
        if stage:
            stages.add(stage.lower())
    return bases


def qualified(reference: str) -> str:
    """``python:3.11-slim`` → ``docker.io/library/python:3.11-slim`` (how registries name it)."""
    first, _, rest = reference.partition("/")
    if not rest:
        return f"docker.io/library/{reference}"
    if "." in first or ":" in first or first == "localhost":
        return reference
    return f"docker.io/{reference}"


def inspect_image(reference: str) -> dict[str, Any] | None:
    """``buildah inspect`` of an image, or None when it is not in local storage."""
    result = subprocess.run(
        ["buildah", *STORAGE, "inspect", "--type", "image", reference],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    inspected: dict[str, Any] = json.loads(result.stdout)
    return inspected


def image_labels(reference: str) -> dict[str, str] | None:
    """The image's labels, or None when it is not in local storage."""
    inspected = inspect_image(reference)
    if inspected is None:
        return None
    return dict(inspected["OCIv1"]["config"].get("Labels") or {})


def try_pull(reference: str) -> tuple[bool, str]:
    try:
        result = subprocess.run(
            ["buildah", *STORAGE, "pull", "--policy", "always", "--retry", "0", "--quiet", reference],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, "no answer within 300 s"
    reason = (result.stderr.strip().splitlines() or [""])[-1]
    return result.returncode == 0, reason


def ensure_base(reference: str) -> str:
    """Make ``reference`` available in local storage; answer ``pulled`` or ``stand-in``."""
    full = qualified(reference)
    labels = image_labels(full)
    if labels is not None and LABEL_STAND_IN not in labels:
        say(f"base {full}: the real image, already in local storage")
        return "pulled"
    pulled, reason = try_pull(full)
    if pulled:
        say(f"base {full}: pulled from its registry")
        return "pulled"
    if not STAND_IN_OK.match(reference):
        die(f"{full} cannot be pulled ({reason}) and the Debian stand-in only replaces python:3.11-slim")
    banner = "=" * 96
    print(banner, flush=True)
    say(f"{full} cannot be pulled ({reason}).")
    say("USING A STAND-IN BASE IMAGE built from Debian bookworm packages (Python 3.11), committed under")
    say("that name so the Dockerfile builds unchanged. It is not the image Fly.io's builder uses: see")
    say("docs/operations.md, 'The stand-in base image'.")
    print(banner, flush=True)
    key = stand_in_key()
    if labels is not None and labels.get(LABEL_KEY) == key:
        say(f"stand-in {full}: cached in buildah storage (key {key[:12]})")
    else:
        build_stand_in(full, key)
    return "stand-in"


def host_pip_settings() -> dict[str, str]:
    """The machine's pip settings (configuration files, then ``PIP_*`` variables)."""
    settings: dict[str, str] = {}
    config = configparser.ConfigParser(interpolation=None)
    files = [*HOST_PIP_FILES]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    for path in files:
        if path.is_file():
            config.read(path)
    for section in ("global", "install"):
        if config.has_section(section):
            settings.update(config.items(section))
    for name, value in os.environ.items():
        if name.startswith("PIP_"):
            settings[name[4:].lower().replace("_", "-")] = value
    return settings


def host_ca_bundle() -> Path:
    for candidate in (
        host_pip_settings().get("cert"),
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        CA_BUNDLE_IN_IMAGE,
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    die(
        "no CA bundle found on this machine (pip's cert, SSL_CERT_FILE or /etc/ssl/certs/ca-certificates.crt)"
    )


def stand_in_pip_conf() -> str:
    """The machine's way of reaching the package index, as a pip.conf for the stand-in."""
    settings = {key: value for key, value in host_pip_settings().items() if key in PIP_NETWORK_KEYS}
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        if os.environ.get(proxy) and "proxy" not in settings:
            settings["proxy"] = os.environ[proxy]
    for key in ("index-url", "extra-index-url"):
        # Indexes on this machine's disk (file:// URLs) do not exist inside the image.
        urls = [url for url in settings.get(key, "").split() if not url.startswith("file:")]
        if urls:
            settings[key] = " ".join(urls)
        else:
            settings.pop(key, None)
    settings["cert"] = CA_BUNDLE_IN_IMAGE
    lines = [
        "# Stand-in base only (.ci/image.py): how the build machine reaches the package index.",
        "[global]",
        *(f"{key} = {value}" for key, value in sorted(settings.items())),
    ]
    return "\n".join(lines) + "\n"


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (DEBIAN_MIRROR overrides it)."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    paths = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    texts = [path.read_text() for path in paths if path.is_file()]
    return mirror_from_sources(texts) or "http://deb.debian.org/debian"


def mirror_from_sources(texts: list[str]) -> str | None:
    """The first non-security URI serving SUITE, in one-line or deb822 apt sources."""
    for text in texts:
        for line in text.splitlines():  # one-line style: deb [OPTIONS] URI SUITE COMPONENTS
            words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE and "security" not in words[1]:
                return words[1].rstrip("/")
        for stanza in re.split(r"\n\s*\n", text):  # deb822 style
            fields: dict[str, str] = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
            if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                for uri in fields.get("URIs", "").split():
                    if "security" not in uri:
                        return uri.rstrip("/")
    return None


def stand_in_key() -> str:
    """Changes when the recipe, the cached tree, the CA bundle or the pip settings change."""
    digest = hashlib.sha256(RECIPE.encode())
    digest.update(host_ca_bundle().read_bytes())
    digest.update(stand_in_pip_conf().encode())
    if TARBALL.is_file():
        stat = TARBALL.stat()
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def ensure_tarball() -> None:
    if TARBALL.is_file():
        say(f"debootstrap tree: cached at {TARBALL}")
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    say(f"debootstrap {SUITE} (minbase, python3, python3-venv, python3-pip) from {mirror}: about 90 s ...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs.") as tmp:
        tree = Path(tmp) / "rootfs"
        log = CACHE / "debootstrap.log"
        with log.open("w") as out:
            code = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=python3,python3-venv,python3-pip",
                    SUITE,
                    str(tree),
                    mirror,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        if code != 0:
            sys.stderr.write(log.read_text()[-3000:])
            die(f"debootstrap failed (log: {log})")
        slim(tree)
        partial = Path(tmp) / "rootfs.tar"
        run(["tar", "--numeric-owner", "--xattrs", "-C", str(tree), "-cf", str(partial), "."])
        partial.replace(TARBALL)
    say(f"debootstrap tree: {TARBALL} in {time.monotonic() - started:.0f} s")


def slim(tree: Path) -> None:
    for relative in SLIM_PATHS:
        target = tree / relative
        if target.is_dir():
            shutil.rmtree(target)
            target.mkdir()
    docs = tree / "usr/share/doc"
    for entry in docs.iterdir() if docs.is_dir() else ():
        for item in entry.iterdir() if entry.is_dir() and not entry.is_symlink() else ():
            if item.name != "copyright":
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    lists = tree / "var/lib/apt/lists"
    for item in lists.iterdir() if lists.is_dir() else ():
        if item.is_file():
            item.unlink()
    (tree / "etc/dpkg/dpkg.cfg.d/slim").write_text(DPKG_SLIM)
    # The container runtime provides these; debootstrap copied the build machine's.
    for name in ("etc/resolv.conf", "etc/hostname"):
        (tree / name).unlink(missing_ok=True)
    # python:3.11-slim answers to `python` as well as `python3`.
    (tree / "usr/bin/python").unlink(missing_ok=True)
    (tree / "usr/bin/python").symlink_to("python3")


def build_stand_in(full: str, key: str) -> None:
    ensure_tarball()
    key = stand_in_key()  # the tarball may be new
    started = time.monotonic()
    container = buildah("from", "--name", f"tierline-stand-in-{os.getpid()}", "scratch").strip()
    try:
        mount = Path(buildah("mount", container).strip())
        run(["tar", "--numeric-owner", "--xattrs", "-xpf", str(TARBALL), "-C", str(mount)])
        shutil.copyfile(host_ca_bundle(), mount / CA_BUNDLE_IN_IMAGE.lstrip("/"))
        (mount / "etc/pip.conf").write_text(stand_in_pip_conf())
        buildah("umount", container)
        buildah(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--cmd",
            "python3",
            "--label",
            f"{LABEL_STAND_IN}={RECIPE}",
            "--label",
            f"{LABEL_KEY}={key}",
            "--created-by",
            "tierline .ci/image.py stand-in",
            container,
        )
        buildah("commit", "--quiet", "--rm", container, full)
    except BaseException:
        subprocess.run(["buildah", *STORAGE, "rm", container], capture_output=True, check=False)
        raise
    say(f"stand-in {full}: committed in {time.monotonic() - started:.0f} s (key {key[:12]})")


# ---------------------------------------------------------------------------------------------
# The image


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        ).stdout

    revision = git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
    return revision + ("-dirty" if git("status", "--porcelain").strip() else "")


def build(tag: str) -> None:
    started = time.monotonic()
    ensure_tools()
    bases = dockerfile_bases(ROOT / "Dockerfile")
    if not bases:
        die("the Dockerfile names no base image")
    kinds = {base: ensure_base(base) for base in bases}
    say(f"building {tag} from {ROOT / 'Dockerfile'} ...")
    built = time.monotonic()
    # No --layers: with the vfs driver every cached step is a full copy of the file system, which
    # costs more than it saves; the dependencies are downloaded again (seconds on a fast network).
    run(
        [
            "buildah",
            *STORAGE,
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",
            "--label",
            f"org.opencontainers.image.revision={git_revision()}",
            "--label",
            f"org.tierline.base={','.join(sorted(set(kinds.values())))}",
            "--file",
            str(ROOT / "Dockerfile"),
            "--tag",
            tag,
            str(ROOT),
        ]
    )
    say(f"built {tag} in {time.monotonic() - built:.0f} s ({time.monotonic() - started:.0f} s in all)")
    remove_superseded()
    info(tag)
    if "stand-in" in kinds.values():
        say("NOTE: built on the STAND-IN base (Debian bookworm packages), not the pulled python:3.11-slim")


def remove_superseded() -> None:
    """Earlier builds and stand-ins no tag names any more (each is a full copy under vfs), unless
    a container still uses them."""
    for label in ("org.tierline.base", LABEL_STAND_IN):
        listing = buildah("images", "--quiet", "--filter", "dangling=true", "--filter", f"label={label}")
        for image in listing.split():
            subprocess.run(["buildah", *STORAGE, "rmi", image], capture_output=True, check=False)


def info(tag: str) -> None:
    inspected = inspect_image(tag)
    if inspected is None:
        die(f"{tag} is not in local storage: run `make image`")
    layers = inspected["OCIv1"]["rootfs"]["diff_ids"]
    labels = inspected["OCIv1"]["config"].get("Labels") or {}
    base = qualified(dockerfile_bases(ROOT / "Dockerfile")[-1])
    say(
        f"{tag}: id {inspected['FromImageID'][:12]}, {image_size(tag)}, {len(layers)} layers, "
        f"base {labels.get('org.tierline.base', '?')} ({image_size(base)}), "
        f"revision {labels.get('org.opencontainers.image.revision', '?')}"
    )


def image_size(reference: str) -> str:
    result = subprocess.run(
        ["buildah", *STORAGE, "images", "--format", "{{.Size}}", reference],
        capture_output=True,
        text=True,
        check=False,
    )
    return (result.stdout.split("\n") or ["?"])[0].strip() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("build", "info"))
    parser.add_argument("--tag", default=os.environ.get("IMAGE", "tierline:latest"))
    args = parser.parse_args()
    if args.command == "build":
        build(args.tag)
    else:
        info(args.tag)


if __name__ == "__main__":
    main()
