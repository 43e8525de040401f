"""Jinja2 rendering where every value is escaped for the language it lands in.

Each template's language comes from its name (`.sh.j2`, `.py.j2`, `.yaml.j2`, `.hcl.j2`,
`.service.j2`, `.md.j2`). Its environment has exactly one escaping filter (Markdown has two: text
and code), and refuses to render any `{{ value }}` that did not go through one: forgetting `|sh` in
a shell template is a render error, not a shell injection. This module is the one place values from
a spec are quoted for a shell (`sh`), Python (`py`), YAML (`yaml`), Packer's HCL2 (`hcl`), a systemd
unit (`unit`: plain paths only) or Markdown (`md`, `code`).
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Callable
from functools import cache
from typing import Any

import jinja2
import yaml

from classimage.resources import data_dir


class Escaped(str):
    """Text already escaped for the language of the template it is inserted into."""


class UnescapedValue(jinja2.TemplateError):
    pass


# Bash's reserved words (bash(1), RESERVED WORDS). As arguments they are plain words, but a reader, and
# shellcheck (SC1010), take `--course fi` for a misplaced keyword: a slug or name may be one, so it is quoted.
_RESERVED = frozenset(
    ("!", "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for", "function", "if", "in", "select")
    + ("then", "time", "until", "while", "{", "}", "[[", "]]")
)


def sh(value) -> Escaped:
    """One shell word per value, quoted so the shell reads it back byte for byte, and never bare
    as one of the shell's reserved words. A list or tuple becomes several words."""
    if isinstance(value, (list, tuple)):
        return Escaped(" ".join(sh(v) for v in value))
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnescapedValue(f"cannot put {type(value).__name__} {value!r} in a shell script")
    text = str(value)
    if "\0" in text:
        raise UnescapedValue("a shell word cannot hold a NUL byte")
    return Escaped(f"'{text}'" if text in _RESERVED else shlex.quote(text))


_PY_TYPES = (str, int, float, bool, type(None))


def py(value) -> Escaped:
    """A Python literal that evaluates to `value` (str, numbers, bool, None, lists, dicts)."""

    def check(v):
        if isinstance(v, (list, tuple)):
            return all(check(i) for i in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and check(i) for k, i in v.items())
        return isinstance(v, _PY_TYPES)

    if not check(value):
        raise UnescapedValue(f"cannot write {value!r} as a Python literal")
    return Escaped(repr(value))


class _Dumper(yaml.SafeDumper):
    """Multi-line text as `|` blocks, so scripts inside user data stay readable."""


_YAML_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


def _represent_str(dumper: Any, data: str):  # a SafeDumper, or libyaml's
    # YAML reads U+0085, U+2028 and U+2029 as line breaks; only double quotes escape them.
    style: str | None
    if any(mark in data for mark in _YAML_LINE_BREAKS):
        style = '"'
    else:
        style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(Escaped, _represent_str)

if yaml.__with_libyaml__:  # libyaml's emitter: the same text, a few times faster (the user data's large files)

    class _FastDumper(yaml.CSafeDumper):
        pass

    _FastDumper.add_representer(str, _represent_str)
    _FastDumper.add_representer(Escaped, _represent_str)

# libyaml writes characters beyond U+FFFF as \U escapes, PyYAML writes them as they are: text with
# them goes to PyYAML's emitter, so the same spec renders the same bytes with or without libyaml.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _dumper(value) -> type:
    if not yaml.__with_libyaml__ or _ASTRAL.search(repr(value)):
        return _Dumper
    return _FastDumper


def to_yaml(value, indent: int = 0) -> Escaped:
    """`value` as one YAML node to place after `key: ` at column `indent`; block scalars and
    flow collections keep their continuation lines deeper than the key."""
    text = yaml.dump(
        value, Dumper=_dumper(value), default_flow_style=True, allow_unicode=True, sort_keys=False, width=1 << 30
    )
    if text.endswith("\n...\n"):
        text = text[: -len("...\n")]
    text = text[:-1]  # the document's own final newline; the template's line supplies one
    first, *rest = text.split("\n")
    pad = " " * indent
    return Escaped("\n".join([first] + [pad + line if line else line for line in rest]))


_HCL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hcl(value) -> Escaped:
    """An HCL2 literal: a quoted string (escapes HCL knows, `${` and `%{` doubled so they stay text),
    a number, a bool, or a list of those. HCL reads every string in Unicode's NFC form, so the
    string is written in that form: the file says exactly what Packer reads."""
    if isinstance(value, (list, tuple)):
        return Escaped("[" + ", ".join(hcl(v) for v in value) + "]")
    if isinstance(value, bool):
        return Escaped("true" if value else "false")
    if isinstance(value, (int, float)):
        return Escaped(repr(value))
    if not isinstance(value, str):
        raise UnescapedValue(f"cannot write {value!r} in HCL")
    out = []
    for char in unicodedata.normalize("NFC", value):
        if char in _HCL_ESCAPES:
            out.append(_HCL_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return Escaped('"' + "".join(out).replace("${", "$${").replace("%{", "%%{") + '"')


_UNIT_WORD = re.compile(r"^[A-Za-z0-9/._:-]+$")


def unit(value) -> Escaped:
    """A word in a systemd unit file. systemd's own quoting differs from the shell's, so only
    words that need none are allowed (classimage's paths): anything else is refused."""
    if not isinstance(value, str) or not _UNIT_WORD.fullmatch(value):
        raise UnescapedValue(f"cannot put {value!r} in a systemd unit")
    return Escaped(value)


_MARKDOWN_MARKS = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark, which CommonMark escapes


def md(value) -> Escaped:
    """Text in Markdown: every punctuation mark that could start markup (emphasis, a link, HTML, a
    heading) backslash-escaped, a list as its items joined by commas, all on one line."""
    if isinstance(value, (list, tuple)):
        return Escaped(", ".join(md(v) for v in value))
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise UnescapedValue(f"cannot write {value!r} as Markdown text")
    return Escaped(_MARKDOWN_MARKS.sub(r"\\\1", " ".join(str(value).split())))


def code(value) -> Escaped:
    """Text as a Markdown code span (shown as it is, nothing in it is markup): fenced by more
    backticks than any run inside it, on one line."""
    if not isinstance(value, str):
        raise UnescapedValue(f"cannot write {value!r} as Markdown code")
    text = " ".join(value.splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return Escaped(f"{fence}{pad}{text}{pad}{fence}")


def _refuse_unescaped(value):
    if isinstance(value, Escaped):
        return value
    raise UnescapedValue(f"template inserts {value!r} without its escaping filter")


_FILTERS: dict[str, dict[str, Callable[..., Escaped]]] = {
    "sh": {"sh": sh},
    "py": {"py": py},
    "yaml": {"yaml": to_yaml},
    "hcl": {"hcl": hcl},
    "service": {"unit": unit},
    "timer": {"unit": unit},
    "socket": {"unit": unit},
    "md": {"md": md, "code": code},
}


@cache
def _environment(language: str) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(data_dir("templates")),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_refuse_unescaped,
    )
    environment.filters.update(_FILTERS[language])
    return environment


def render(name: str, **context) -> str:
    """Render templates/`name`, e.g. `steps/tljh.sh.j2`, escaping for its language."""
    language = name.removesuffix(".j2").rsplit(".", 1)[-1]
    if language not in _FILTERS:
        raise ValueError(f"no escaping rules for template {name!r}")
    return _environment(language).get_template(name).render(**context)


def static(name: str) -> str:
    """A file from templates/ shipped as it is (no values inserted)."""
    return (data_dir("templates") / name).read_text(encoding="utf-8")
