"""Load a course spec: YAML -> schema validation -> the checks a schema cannot express -> defaults
-> the typed model. Every problem is reported at once; nothing past this module sees raw dicts."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import ipaddress
import json
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml
from packaging.requirements import InvalidRequirement, Requirement

from classimage import environment, model, resources, units, yamlsource
from classimage.problems import Problem, SpecError
from classimage.yamlsource import Document, format_path

SCHEMA = "course.schema.json"


@dataclass(frozen=True)
class Loaded:
    spec: model.Spec
    warnings: tuple[Problem, ...]
    digest: str  # sha256 of the resolved spec: same course, same digest, whatever the comments


def load_file(path: str | Path) -> Loaded:
    """Read and check the spec at `path`. Raises SpecError (problems) or OSError (cannot read)."""
    path = Path(path)
    with open(path, "rb") as handle:
        raw = handle.read(yamlsource.MAX_BYTES + 1)
    return load_bytes(raw, str(path))


def load_bytes(raw: bytes, filename: str) -> Loaded:
    document = yamlsource.load(raw, filename)
    problems = schema_problems(document) + checks(document)
    certificates, certificate_problems = read_certificates(document, Path(filename).parent)
    repo, repo_problems = read_repo(document, Path(filename).parent)
    problems += certificate_problems + repo_problems
    errors = [p for p in problems if not p.warning]
    if errors:
        raise SpecError(filename, errors)  # warnings wait until the errors are fixed
    data = with_defaults(document.data)
    data["network"]["ca_certificates"] = certificates
    if repo is not None:
        problems += environment.merge(data["environment"], repo, document.line)
        errors = [p for p in problems if not p.warning]
        if errors:
            raise SpecError(filename, errors)
    spec = model.build(model.Spec, data)
    warnings = SpecError(filename, problems).problems  # in report order
    return Loaded(spec=spec, warnings=tuple(warnings), digest=digest(spec))


def for_repo(repo: Path, admins: list[str]) -> Loaded:
    """A spec for a course repository that has none: the defaults, named after its folder, with
    the environment its binder files describe."""
    repo = Path(repo).resolve()
    slug = re.sub(r"[^a-z0-9-]+", "-", repo.name.lower()).strip("-")[:32].strip("-")
    if not re.match(r"^[a-z][a-z0-9-]*[a-z0-9]$", slug):
        slug = ("course-" + slug).strip("-")[:32].strip("-") if slug else "course"
    data = {"course": {"name": repo.name[:120] or "Course", "slug": slug}, "hub": {"admins": admins},
            "environment": {"from_repo": repo.name}}
    return load_bytes(yaml.safe_dump(data, allow_unicode=True).encode(),
                      str(repo.parent / f"{repo.name} (no spec: defaults)"))


def digest(spec: model.Spec) -> str:
    canonical = json.dumps(dataclasses.asdict(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# The schema: structure, types, patterns. Its `x-expected` and `x-fix` annotations word the errors.

def schema_problems(document: Document) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(resources.schema(SCHEMA))
    problems: list[Problem] = []
    for error in validator.iter_errors(document.data):
        problems.extend(_translate(error, document))
    return problems


def _translate(error: jsonschema.ValidationError, document: Document) -> list[Problem]:
    path = tuple(error.absolute_path)
    here = format_path(path)
    line = document.line(path)
    schema, value, keyword = error.schema, error.instance, error.validator

    if keyword == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        result = []
        for key in sorted(k for k in value if k not in allowed):
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            fix = f"did you mean `{close[0]}`?" if close else "keys allowed here: " + ", ".join(allowed)
            result.append(Problem(document.line(path + (key,), key=True), format_path(path + (key,)),
                                  "unknown key", fix))
        return result
    if keyword == "required":
        if not path:
            parent = "at the top"
        elif isinstance(path[-1], int):
            parent = f"to item {path[-1] + 1} of `{format_path(path[:-1])}`"
        else:
            parent = f"under `{path[-1]}:`"
        result = []
        for key in error.validator_value:
            if key not in value:
                example = schema.get("properties", {}).get(key, {}).get("examples", [None])[0]
                shown = f"`{key}: {json.dumps(example)}`" if example is not None else f"`{key}:`"
                result.append(Problem(document.line(path, key=True), format_path(path + (key,)),
                                      "is missing", f"add {shown} {parent}"))
        return result
    if keyword == "dependentRequired":
        result = []
        for key, needed in error.validator_value.items():
            for other in needed:
                if key in value and other not in value:
                    result.append(Problem(document.line(path + (key,), key=True),
                                          format_path(path + (other,)), f"is missing: `{key}` needs it",
                                          f"add `{other}:` under `{path[-1]}:`" if path else f"add `{other}:`"))
        return result
    if keyword == "type":
        return [Problem(line, here, f"expected {_type_words(error.validator_value)}, got {_describe(value)}",
                        schema.get("x-fix") or _type_fix(error.validator_value, value))]
    if keyword == "pattern":
        fix = schema.get("x-fix", "")
        suggestion = units.suggest_memory(value) if "K, M, G, T" in fix else None
        if suggestion:
            fix = f"write {suggestion}"
        return [Problem(line, here, f"{_short(value)} is not {schema.get('x-expected', 'valid here')}", fix)]
    if keyword == "enum":
        options = [str(o) for o in error.validator_value]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
        fix = f"did you mean `{close[0]}`?" if close else "choose one of: " + ", ".join(options)
        return [Problem(line, here, f"{_short(value)} is not a choice here", fix)]
    if keyword == "minItems":
        return [Problem(line, here, f"needs at least {error.validator_value} item(s)",
                        "add one, as `- name` on the next line")]
    if keyword in ("minimum", "maximum", "exclusiveMinimum"):
        bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}[keyword]
        return [Problem(line, here, f"{_short(value)} is out of range", f"use a number {bound} {error.validator_value}")]
    if keyword == "minLength":
        return [Problem(line, here, "is empty", "write a value or remove the key")]
    if keyword == "maxLength":
        return [Problem(line, here, f"is {len(value)} characters long",
                        f"shorten it to at most {error.validator_value}")]
    return [Problem(line, here, error.message[:200])]


_TYPE_WORDS = {"string": "text", "array": "a list", "object": "a mapping of keys", "integer": "a whole number",
               "number": "a number", "boolean": "true or false", "null": "nothing (null)"}


def _type_words(expected) -> str:
    kinds = [expected] if isinstance(expected, str) else list(expected)
    return " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)


def _type_fix(expected, value) -> str:
    kinds = [expected] if isinstance(expected, str) else list(expected)
    if "string" in kinds and isinstance(value, (list, dict)):
        return "write it as text on one line, in quotes if it holds : [ ] { } or #"
    if "string" in kinds and value is not None:
        shown = value.isoformat() if hasattr(value, "isoformat") else str(value)
        if isinstance(value, bool):
            shown = "yes/no/on/off (YAML reads them as true/false)"
            return f"put the value in quotes; unquoted, {shown}"
        return f'put it in quotes: "{_clip(shown)}"'
    if "array" in kinds:
        return "write a list: `[a, b]`, or one `- item` per line"
    if "object" in kinds:
        return "write its keys indented on the lines below it"
    if "boolean" in kinds:
        return "write true or false"
    if "integer" in kinds:
        return "write a whole number without quotes or units"
    if "number" in kinds:
        return "write a number without quotes or units"
    return ""


def _describe(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {_short(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value) -> str:
    return _clip(repr(value)) if isinstance(value, str) else _describe(value)


# ---------------------------------------------------------------------------------------------
# What the schema cannot say. Runs on data that may still be invalid, so every lookup is guarded.

def checks(document: Document) -> list[Problem]:
    data = document.data
    problems: list[Problem] = []

    def at(path, message, fix="", warning=False):
        problems.append(Problem(document.line(path), format_path(path), message, fix, warning))

    # Listed twice: harmless to pip or apt, but always a slip in a course spec.
    for path, key in [(("hub", "admins"), str), (("hub", "auth", "allowed_users"), str),
                      (("environment", "apt"), str), (("environment", "conda", "packages"), environment.conda_name),
                      (("environment", "pip"), environment.pip_name)]:
        seen: dict = {}
        for item_path, item in _strings(data, path):
            name = key(item)
            if name in seen:
                at(item_path, f"{_short(item)} is listed twice (also line {document.line(seen[name])})",
                   "remove one of them")
            else:
                seen[name] = item_path

    for item_path, item in _strings(data, ("environment", "pip")):
        try:
            Requirement(item)
        except InvalidRequirement as error:
            reason = str(error).splitlines()[0]
            at(item_path, f"{_short(item)} is not a pip requirement: {reason}",
               "write one requirement such as lavavu or jupytext>=1.16; pip options are not allowed here")

    hostname = _get(data, ("https", "hostname"))
    if isinstance(hostname, str):
        try:
            ipaddress.ip_address(hostname)
            at(("https", "hostname"), f"{_short(hostname)} is an IP address; Let's Encrypt only certifies DNS names",
               "point a DNS name (an A record) at the droplet and write that name here, or remove `https:` "
               "to serve plain HTTP")
        except ValueError:
            pass
    elif hostname is None:
        at(("https",), "no https.hostname: the hub will serve plain HTTP at the droplet's IP address, "
           "and passwords cross the network unencrypted",
           "point a DNS name at the droplet and set https.hostname and https.email", warning=True)

    auth = _get(data, ("hub", "auth"))
    if isinstance(auth, dict):
        method = auth.get("method", "signup")
        for key in ("ask_email", "lockout"):
            if key in auth and method != "signup":
                at(("hub", "auth", key), f"applies only to `method: signup`, not {method}",
                   "remove it, or set `method: signup`")
        if method == "allowed-users" and not auth.get("allowed_users"):
            at(("hub", "auth", "method"), "`allowed-users` needs the list of names",
               "add `allowed_users: [alice, bob]` under `auth:`")
        if auth.get("allowed_users") and method != "allowed-users":
            at(("hub", "auth", "allowed_users"), f"applies only to `method: allowed-users`, not {method}",
               "remove it, or set `method: allowed-users`")

    idle = _get(data, ("hub", "idle_timeout"))
    try:
        if isinstance(idle, str) and idle != "never" and units.seconds(idle) < 60:
            at(("hub", "idle_timeout"), f"{idle!r} is shorter than a minute; students would lose their "
               "servers while reading", "use at least 1m, e.g. 30m")
    except ValueError:
        pass  # the schema's pattern reports it
    memory = _get(data, ("hub", "memory_limit"))
    if isinstance(memory, str):
        try:
            if units.memory_bytes(memory) < 128 << 20:
                at(("hub", "memory_limit"), f"{memory!r} is too little for a notebook server",
                   "use at least 256M, e.g. 1G")
        except ValueError:
            pass  # the schema's pattern reports it

    folders: dict = {}
    content = data.get("content")
    for i, repo in enumerate(content if isinstance(content, list) else []):
        if not isinstance(repo, dict):
            continue
        opened = repo.get("open")
        if isinstance(opened, str) and ".." in opened.split("/"):
            at(("content", i, "open"), f"{_short(opened)} leaves the repository",
               "write a path inside the repository, without ..")
        url = repo.get("url")
        if isinstance(url, str):
            folder = model.ContentRepo(url=url, branch=None, open=None).folder
            if folder in folders:
                at(("content", i, "url"), f"pulls into the folder {folder!r}, like the repository on line "
                   f"{document.line(folders[folder])}", "list each repository once")
            else:
                folders[folder] = ("content", i, "url")

    url = _get(data, ("tljh", "bootstrap_url"))
    if isinstance(url, str) and url.startswith("http://"):
        at(("tljh", "bootstrap_url"), "is plain http: anyone on the path can change what runs as root",
           "use an https:// URL", warning=True)
    return problems


_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)
MAX_CERTIFICATE_BYTES = 64 * 1024


def read_certificates(document: Document, base: Path) -> tuple[list[str], list[Problem]]:
    """network.ca_certificates as PEM text: items that are not PEM already name files relative to
    the spec. Each must hold certificates OpenSSL can load, and nothing else secret."""
    pems: list[str] = []
    problems: list[Problem] = []
    for path, item in _strings(document.data, ("network", "ca_certificates")):
        def problem(message, fix):
            problems.append(Problem(document.line(path), format_path(path), message, fix))

        text = item
        if "-----BEGIN" not in item:
            file = base / item
            try:
                if file.stat().st_size > MAX_CERTIFICATE_BYTES:
                    problem(f"{_short(item)} is too large for a certificate file", "name the CA's PEM file")
                    continue
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or "not a text file"
                problem(f"cannot read {_short(item)}: {reason}",
                        "give a PEM file's path relative to the spec, or paste the PEM text")
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
            problem(f"is not a certificate OpenSSL can read ({error.reason or error})",
                    "check the PEM text was copied whole")
            continue
        pems.extend(block + "\n" for block in blocks)
    return pems, problems


def read_repo(document: Document, base: Path) -> tuple[environment.RepoEnvironment | None, list[Problem]]:
    """environment.from_repo's binder files, each item held to the same rules as the spec's own."""
    where = ("environment", "from_repo")
    folder = _get(document.data, where)
    if not isinstance(folder, str):
        return None, []
    if not (base / folder).is_dir():
        return None, [Problem(document.line(where), format_path(where), f"{_short(folder)} is not a folder",
                              "give the course repository's folder, relative to this spec")]
    found = environment.read(base / folder)
    problems = list(found.problems)
    root = resources.schema(SCHEMA)
    items = lambda *keys: resources.resolve("#/properties/environment/properties/" + "/properties/".join(keys), root)
    rules = [(found.apt, items("apt")["items"]), (found.conda, items("conda", "packages")["items"]),
             (found.channels, items("conda", "channels")["items"])]
    if found.python:
        rules.append(([found.python], items("python")))
    for listed, rule in rules:
        validator = jsonschema.Draft202012Validator(rule)
        for item in listed:
            if any(True for _ in validator.iter_errors(item.value)):
                problems.append(Problem(item.line, "", f"{_short(item.value)} is not {rule.get('x-expected')}",
                                        rule.get("x-fix", ""), file=item.file))
    for item in found.pip:
        try:
            Requirement(item.value)
        except InvalidRequirement as error:
            problems.append(Problem(item.line, "", f"{_short(item.value)} is not a pip requirement: "
                                    f"{str(error).splitlines()[0]}", "classimage installs requirements one by one: "
                                    "options such as -r, -e or --index-url are not supported", file=item.file))
    return found, problems


def _strings(data, path) -> list[tuple[tuple, str]]:
    value = _get(data, path)
    if not isinstance(value, list):
        return []
    return [(path + (i,), v) for i, v in enumerate(value) if isinstance(v, str)]


def _get(data, path):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


# ---------------------------------------------------------------------------------------------
# Defaults come from the schema, so the schema stays their only source.

def with_defaults(data: dict) -> dict:
    root = resources.schema(SCHEMA)
    return _fill(copy.deepcopy(data), root, root)


def _fill(value, schema: dict, root: dict):
    if "$ref" in schema:
        schema = resources.resolve(schema["$ref"], root)
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            sub_resolved = resources.resolve(sub["$ref"], root) if "$ref" in sub else sub
            if key not in value and "default" in sub_resolved:
                value[key] = copy.deepcopy(sub_resolved["default"])
            if key in value:
                value[key] = _fill(value[key], sub_resolved, root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [_fill(item, schema["items"], root) for item in value]
    return value

