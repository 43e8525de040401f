"""A network that needs a proxy or inspects TLS: the proxy and the extra CAs, written where each
tool reads them (apt, pip, conda, the system trust store, the environment of steps and of students'
servers)."""

from __future__ import annotations

import configparser
import io

import yaml

from classimage.model import Spec

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
    result = [(f"/usr/local/share/ca-certificates/classimage-{i + 1}.crt", pem, "0644")
              for i, pem in enumerate(certificates)]
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
    return ("// Written by classimage: apt downloads through the course's proxy.\n"
            f'Acquire::http::Proxy "{proxy}";\nAcquire::https::Proxy "{proxy}";\n')


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
