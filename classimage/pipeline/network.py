"""A network that needs a proxy or inspects TLS: the proxy and the extra CAs, written where each
tool reads them (apt, pip, conda, the system trust store, the environment of steps and of students'
servers)."""

from __future__ import annotations

import configparser
import io
import os
import re
import ssl
from pathlib import Path

import yaml

from classimage.pipeline import yamlsource
from classimage.pipeline.model import Spec
from classimage.pipeline.problems import Problem, short
from classimage.pipeline.yamlsource import Document, format_path

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # what update-ca-certificates builds
NO_PROXY = "localhost,127.0.0.1,::1,169.254.169.254"
APT_CONF = "/etc/apt/apt.conf.d/80classimage-proxy"
PIP_CONF = "/etc/pip.conf"
CONDARC = "/etc/conda/condarc.d/classimage.yml"


def environment(spec: Spec) -> dict[str, str]:
    """Variables for every provisioning step, and for students' servers."""
    result: dict[str, str] = {}
    proxy = spec.network.proxy
    if proxy:
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            result[name] = proxy
        result["no_proxy"] = result["NO_PROXY"] = NO_PROXY
    if spec.network.ca_certificates:
        # Python's ssl, requests (conda, TLJH), pip and conda each have their own variable.
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CONDA_SSL_VERIFY"):
            result[name] = CA_BUNDLE
    return result


def files(spec: Spec) -> list[tuple[str, str, str]]:
    """(path, content, mode) of the configuration the network needs; empty on an ordinary network."""
    proxy, certificates = spec.network.proxy, spec.network.ca_certificates
    result = [
        (f"/usr/local/share/ca-certificates/classimage-{i + 1}.crt", pem, "0644") for i, pem in enumerate(certificates)
    ]
    if proxy:
        result.append((APT_CONF, _apt_conf(proxy), "0644"))
    if proxy or certificates:
        result.append((PIP_CONF, _pip_conf(proxy, bool(certificates)), "0644"))
        result.append((CONDARC, _condarc(proxy, bool(certificates)), "0644"))
    return result


def _apt_conf(proxy: str) -> str:
    # apt.conf strings have no escapes: refuse what would end one (the schema never lets it through).
    if any(c in proxy for c in '"\\;\n{}'):
        raise ValueError(f"cannot write {proxy!r} into apt.conf")
    return (
        "// Written by classimage: apt downloads through the course's proxy.\n"
        f'Acquire::http::Proxy "{proxy}";\nAcquire::https::Proxy "{proxy}";\n'
    )


def _pip_conf(proxy: str | None, certificates: bool) -> str:
    parser = configparser.ConfigParser()
    parser["global"] = {}
    if proxy:
        parser["global"]["proxy"] = proxy
    if certificates:
        parser["global"]["cert"] = CA_BUNDLE
    out = io.StringIO()
    out.write("# Written by classimage: how every pip on this server reaches PyPI.\n")
    parser.write(out)
    return out.getvalue()


def _condarc(proxy: str | None, certificates: bool) -> str:
    settings: dict = {}
    if proxy:
        settings["proxy_servers"] = {"http": proxy, "https": proxy}
    if certificates:
        settings["ssl_verify"] = CA_BUNDLE
    return "# Written by classimage: how conda and mamba reach their channels.\n" + yaml.safe_dump(settings)


_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)
MAX_CERTIFICATE_BYTES = 64 * 1024


def read_certificates(document: Document, base: Path) -> tuple[list[str], list[Problem]]:
    """network.ca_certificates as PEM text: items that are not PEM already name files relative to
    the spec. Each must hold certificates OpenSSL can load, and nothing else secret."""
    pems: list[str] = []
    problems: list[Problem] = []
    for path, item in document.strings(("network", "ca_certificates")):

        def problem(message, fix, path=path):
            problems.append(Problem(document.line(path), format_path(path), message, fix))

        text = item
        if "-----BEGIN" not in item:
            file = base / item
            try:
                # A relative name is a file beside the spec: it stays the spec's folder's own, whatever
                # symlink it is; an absolute one names a file of this machine, in plain sight.
                raw = (
                    yamlsource.read_file(file, MAX_CERTIFICATE_BYTES)
                    if os.path.isabs(item)
                    else yamlsource.read_inside(file, base, MAX_CERTIFICATE_BYTES, "the spec's folder")
                )
                if len(raw) > MAX_CERTIFICATE_BYTES:
                    problem(
                        f"{short(item)} is more than {MAX_CERTIFICATE_BYTES // 1024} KiB: too large for a "
                        "certificate file",
                        "name the CA's PEM file",
                    )
                    continue
                text = raw.decode("utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = (
                    str(error)
                    if isinstance(error, yamlsource.NotAFile)
                    else getattr(error, "strerror", None) or "not a text file"
                )
                problem(
                    f"cannot read {short(item)}: {reason}",
                    "copy the CA's PEM file into the spec's folder and name it relative to the spec, "
                    "or paste the PEM text"
                    if isinstance(error, yamlsource.Outside)
                    else "give a PEM file's path relative to the spec, or paste the PEM text",
                )
                continue
        if "PRIVATE KEY" in text:
            problem("holds a private key", "give only the CA's certificate: user data is readable on the server")
            continue
        blocks = _PEM_BLOCK.findall(text)
        if not blocks:
            problem("holds no PEM certificate", "give text that starts with -----BEGIN CERTIFICATE-----")
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata="\n".join(blocks))
        except ssl.SSLError as error:
            problem(
                f"is not a certificate OpenSSL can read ({error.reason or error})",
                "check the PEM text was copied whole",
            )
            continue
        pems.extend(block + "\n" for block in blocks)
    return pems, problems
