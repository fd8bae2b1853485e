"""Options from a TOML file and from ``TIDEGATE_*`` environment variables.

Every option of the command line (``build_parser()`` in :mod:`tidegate.cli`) can also be
set in a TOML file (``--config FILE``, or the ``[tool.tidegate]`` table of a
``pyproject.toml`` in the working directory) and in an environment variable
(``TIDEGATE_WORKERS=4``). The command line wins over the environment, which wins over the
file, which wins over the option's default.

Nothing here knows the options by name, but for two: ``--chdir`` says where to look for
``pyproject.toml``, and ``--protocol cgi`` turns files and variables off. Keys, value
shapes and validation are derived from the argparse actions themselves: their long name,
``dest``, ``type=`` callable, ``choices``, ``nargs`` and action kind (``store_true``,
``append``...). An option added to the parser later is
configurable with no change here, and its values from a file or the environment go
through the same ``type=`` and ``choices`` checks as on the command line.

Keys are the long option names without the dashes in front (``limit-request-line``);
underscores are accepted in their place (``limit_request_line``). The positional APP is the
key ``app``. The environment variable of a key is ``TIDEGATE_`` plus the key in upper case
with underscores (``TIDEGATE_LIMIT_REQUEST_LINE``).

This module is imported only on the argparse path: a CGI script (``--protocol cgi``) never
reads a file or the environment for options (see :func:`parse_configured_args`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

#: Prefix of the environment variables that set options.
ENV_PREFIX = "TIDEGATE_"

#: The environment variable naming the configuration file (like ``--config``).
CONFIG_ENV = "TIDEGATE_CONFIG"

#: ``TIDEGATE_*`` variables that are not options: read by other parts of tidegate (the fuzz
#: targets' ``TIDEGATE_FUZZ_SKIP``), so they are not reported as unknown options. A part of
#: tidegate that reads a new ``TIDEGATE_*`` variable of its own must name it here.
RESERVED_ENV = frozenset({CONFIG_ENV, "TIDEGATE_FUZZ_SKIP"})

#: The words a boolean takes in an environment variable (case-insensitive).
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})

#: The table of a pyproject.toml that holds tidegate's options.
PYPROJECT_TABLE = ("tool", "tidegate")

# Where the namespace keeps {dest: (key, source)} for ``origin``.
_SOURCES_ATTRIBUTE = "_config_sources"

# The destinations of the two options this module adds: they are not configuration keys.
_CONFIG_DEST = "config"
_PRINT_DEST = "print_config"


class _Unset:
    """Marks "not given on the command line" (a value no option can produce)."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


class ConfigError(Exception):
    """A bad configuration file or variable; the message names the key and its source."""


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and ``--print-config`` to ``parser``."""
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--config",
        dest=_CONFIG_DEST,
        metavar="FILE",
        help=f"read options from the TOML file FILE (also {CONFIG_ENV}; default: the "
        "[tool.tidegate] table of ./pyproject.toml, if any). Every option can be set there "
        "and in a TIDEGATE_<OPTION> environment variable; the command line wins over "
        "the environment, which wins over the file",
    )
    group.add_argument(
        "--print-config",
        dest=_PRINT_DEST,
        action="store_true",
        help="print the effective configuration as TOML, each value with where it came "
        "from, and exit",
    )


# --- the options, seen from argparse ---------------------------------------------------------


class _Option:
    """One configurable argparse action: its key, its shape, how to convert a value."""

    def __init__(self, action: argparse.Action, parser: argparse.ArgumentParser):
        self.action = action
        self.dest = action.dest
        #: The ``type=`` callable (a name registered with ``parser.register("type", ...)``
        #: resolved), or None for a plain string.
        self.convert = _converter(action, parser)
        self.key = _key_of(action)
        self.env = ENV_PREFIX + self.key.upper().replace("-", "_")

    @property
    def is_flag(self) -> bool:
        """Takes no value on the command line (store_true/false/const, count...)."""
        return self.action.nargs == 0

    @property
    def accumulates(self) -> bool:
        """Each use on the command line adds to a list (append, extend) or a count."""
        return isinstance(
            self.action,
            (argparse._AppendAction, argparse._AppendConstAction, argparse._CountAction),
        )

    @property
    def is_list(self) -> bool:
        """The value is a list: a repeatable option, or one taking several values."""
        nargs = self.action.nargs
        return isinstance(self.action, argparse._AppendAction) or nargs in ("*", "+") or (
            isinstance(nargs, int) and nargs > 0
        )

    @property
    def items_are_lists(self) -> bool:
        """A repeatable option that takes several values each time: a list of lists."""
        nargs = self.action.nargs
        return (
            isinstance(self.action, argparse._AppendAction)
            and not isinstance(self.action, argparse._ExtendAction)
            and (nargs in ("*", "+") or (isinstance(nargs, int) and nargs > 0))
        )

    def describe(self) -> str:
        """How argparse names the option in its messages (``-w/--workers``, ``APP``)."""
        if self.action.option_strings:
            return "/".join(self.action.option_strings)
        return str(self.action.metavar or self.action.dest)

    def default(self) -> Any:
        """The default, converted as argparse converts a string default."""
        default = self.action.default
        if isinstance(default, str) and self.convert is not None and not self.is_flag:
            return self.convert(default)
        return default


def _converter(
    action: argparse.Action, parser: argparse.ArgumentParser
) -> Optional[Callable[[str], Any]]:
    if action.type is None:
        return None
    convert = parser._registry_get("type", action.type, action.type)
    return convert if callable(convert) else None


def _key_of(action: argparse.Action) -> str:
    for option in action.option_strings:
        if option.startswith("--"):
            return option[2:]
    return action.dest.replace("_", "-")


def _normalise(key: str) -> str:
    return key.replace("_", "-")


def _configurable(parser: argparse.ArgumentParser) -> List[_Option]:
    """The actions a file or variable may set: not --help/--version (default SUPPRESS),
    not hidden ones (help SUPPRESS), not --config/--print-config."""
    options = []
    for action in parser._actions:
        if action.default is argparse.SUPPRESS or action.help is argparse.SUPPRESS:
            continue
        if action.dest in (_CONFIG_DEST, _PRINT_DEST):
            continue
        options.append(_Option(action, parser))
    return options


# --- the command line ------------------------------------------------------------------------


def _parse_command_line(
    parser: argparse.ArgumentParser, args: Sequence[str]
) -> Tuple[argparse.Namespace, Dict[str, List[str]], List[argparse.Action]]:
    """Parse ``args`` so that what was *not* given stays ``_UNSET`` (``None`` for the
    options that accumulate): a configured value must not be hidden by a default.

    Returns the namespace, the strings given to each typed option (by dest, for
    ``--print-config``), and the actions argparse would have required (APP), whose
    absence is checked once the file and environment are merged.
    """
    namespace = argparse.Namespace()
    raws: Dict[str, List[str]] = {}
    required: List[argparse.Action] = []
    saved: List[Tuple[argparse.Action, Dict[str, Any]]] = []
    try:
        for action in parser._actions:
            if action.dest is argparse.SUPPRESS or action.default is argparse.SUPPRESS:
                continue
            saved.append((action, dict(vars(action))))
            if action.required or (not action.option_strings and action.nargs is None):
                required.append(action)
                action.required = False
            if not action.option_strings:
                # A positional is always "called" by argparse, with its default when absent.
                if action.nargs is None:
                    action.nargs = "?"
                action.default = _UNSET
            else:
                accumulates = _Option(action, parser).accumulates
                setattr(namespace, action.dest, None if accumulates else _UNSET)
            convert = _converter(action, parser)
            if convert is not None:
                action.type = _recording(convert, raws.setdefault(action.dest, []))
        parser.parse_args(args, namespace)
    finally:
        for action, attributes in saved:
            vars(action).update(attributes)
    return namespace, raws, required


def _recording(convert: Callable[[str], Any], raws: List[str]) -> Callable[[str], Any]:
    """``convert`` that also remembers the strings it was given (argparse names a failing
    converter by its ``__name__``, which the wrapper keeps)."""
    import functools

    @functools.wraps(convert)
    def record(text: str) -> Any:
        value = convert(text)
        raws.append(text)
        return value

    return record


def _given_on_command_line(option: _Option, namespace: argparse.Namespace) -> bool:
    value = getattr(namespace, option.dest, _UNSET)
    return value is not _UNSET and not (option.accumulates and value is None)


# --- values from a file or a variable --------------------------------------------------------


_TOML_TYPE_NAMES = {bool: "boolean", int: "integer", float: "float", str: "string",
                    list: "array", dict: "table"}


def _type_name(value: Any) -> str:
    return _TOML_TYPE_NAMES.get(type(value), type(value).__name__)


class _WrongType(ConfigError):
    """A value of the wrong TOML type; ``in_list`` says so for a list of such values."""

    def __init__(self, numbers: bool, value: Any, in_list: bool = False):
        if in_list:
            expected = "an array of numbers or strings (or one)" if numbers else (
                "an array of strings (or one string)")
        else:
            expected = "a number or a string" if numbers else "a string"
        super().__init__(f"expected {expected}, got {_type_name(value)} {_show(value)}")
        self.numbers = numbers


def _convert_item(option: _Option, value: Any) -> Any:
    """One value (a TOML scalar, or a string from a variable) through the option's
    ``type=`` and ``choices``, as argparse does with a command-line string.

    A TOML number is passed as its text, and accepted only if the converter makes a number
    of it (``workers = 4``; not ``bind = 5``, whose converter keeps strings)."""
    action = option.action
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _WrongType(option.convert is not None, value)
    if isinstance(value, int) and _has_string_choices(action):
        # `http = 2`, `cert-reqs = 2`: the choices are strings, some of them numbers, and a
        # TOML integer is what people write for those. Its text is checked as a choice.
        value = str(value)
    if option.convert is None:
        if not isinstance(value, str):
            raise _WrongType(False, value)
        converted: Any = value
    else:
        text = value if isinstance(value, str) else repr(value)
        try:
            converted = option.convert(text)
        except argparse.ArgumentTypeError as error:
            raise ConfigError(str(error)) from None
        except (TypeError, ValueError):
            name = getattr(action.type, "__name__", repr(action.type))
            raise ConfigError(f"invalid {name} value: {text!r}") from None
        if not isinstance(value, str) and (
            isinstance(converted, bool) or not isinstance(converted, (int, float))
        ):
            raise _WrongType(False, value)
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(repr(choice) for choice in action.choices)
        raise ConfigError(f"invalid choice: {converted!r} (choose from {choices})")
    return converted


def _has_string_choices(action: argparse.Action) -> bool:
    """Whether ``action`` takes one of a list of strings (``--http {1,2,auto}``)."""
    choices = action.choices
    return choices is not None and all(isinstance(choice, str) for choice in choices)


def _convert_flag(option: _Option, value: Any) -> Any:
    """A TOML boolean (or a count, for ``action="count"``) for an option without value."""
    action = option.action
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"expected a count (0 or more), got {_type_name(value)} {_show(value)}")
        return value
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {_type_name(value)} {_show(value)}")
    if isinstance(action, argparse.BooleanOptionalAction):
        return value
    if isinstance(action, argparse._AppendConstAction):
        return [action.const] if value else []
    return action.const if value else option.default()


#: The attribute of an argparse action whose one string value is a comma-separated list
#: (``--forwarded-allow-ips 10.0.0.1,10.0.0.2``): a file may give it as a TOML array.
COMMA_SEPARATED = "tidegate_comma_separated"


def _convert_value(option: _Option, value: Any) -> Any:
    """A TOML value for ``option``, of the shape the option has on the command line."""
    if option.is_flag:
        return _convert_flag(option, value)
    if (
        getattr(option.action, COMMA_SEPARATED, False)
        and isinstance(value, list)
        and all(isinstance(item, str) and "," not in item for item in value)
    ):
        value = ",".join(value)  # forwarded-allow-ips = ["10.0.0.1", "10.0.0.2"]
    if not option.is_list:
        return _convert_item(option, value)
    if option.items_are_lists:
        if not isinstance(value, list) or not all(isinstance(item, list) for item in value):
            raise ConfigError(f"expected an array of arrays, got {_type_name(value)} {_show(value)}")
        return [_convert_items(option, item, numbered=True) for item in value]
    if not isinstance(value, list):
        # One value where a list is expected: a list of one.
        try:
            return _convert_items(option, [value])
        except _WrongType as error:
            raise _WrongType(error.numbers, value, in_list=True) from None
    return _convert_items(option, value, numbered=True)


def _convert_items(option: _Option, values: List[Any], numbered: bool = False) -> List[Any]:
    """The values given to one use of an option taking several (or to a repeatable one)."""
    nargs = option.action.nargs
    one_use = option.items_are_lists or not isinstance(option.action, argparse._AppendAction)
    if one_use and isinstance(nargs, int) and len(values) != nargs:
        raise ConfigError(f"expected {nargs} values, got {len(values)}")
    if one_use and nargs == "+" and not values:
        raise ConfigError("expected at least one value")
    converted = []
    for number, value in enumerate(values, 1):
        try:
            converted.append(_convert_item(option, value))
        except ConfigError as error:
            if not numbered:
                raise
            raise ConfigError(f"item {number} of the array: {error}") from None
    return converted


def _from_environment(option: _Option, text: str) -> Any:
    """A variable's text for ``option``: a boolean word for a flag, a comma-separated list
    (or a TOML array) for a list, else the text itself, as on the command line."""
    if option.is_flag:
        if isinstance(option.action, argparse._CountAction):
            if not text.strip().isdigit():
                raise ConfigError(f"expected a count (0 or more), got {text!r}")
            return int(text.strip())
        word = text.strip().lower()
        if word in TRUE_WORDS:
            return _convert_flag(option, True)
        if word in FALSE_WORDS:
            return _convert_flag(option, False)
        raise ConfigError(f"expected true/false, 1/0 or yes/no, got {text!r}")
    if not option.is_list:
        return _convert_item(option, text)
    if text.lstrip().startswith("["):
        try:
            value = _loads_toml("value = " + text)["value"]
        except ValueError as error:
            raise ConfigError(f"not a TOML array: {error}") from None
        return _convert_value(option, value)
    if option.items_are_lists:
        raise ConfigError("expected a TOML array of arrays, such as [[\"a\", \"b\"]]")
    return _convert_items(option, [part.strip() for part in text.split(",") if part.strip()])


def _show(value: Any) -> str:
    try:
        return _toml_value(value)
    except ValueError:
        return repr(value)


# --- reading the sources ---------------------------------------------------------------------


def _loads_toml(text: str) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser as a package: a dependency of tidegate on these versions
        import tomli as tomllib
    return tomllib.loads(text)


def _read_toml(path: str) -> Dict[str, Any]:
    """The TOML document at ``path``; OSError, or ValueError (TOMLDecodeError) if bad."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    return _loads_toml(text)


def _file_table(path: str) -> Tuple[Dict[str, Any], str]:
    """The option table of the file at ``path`` and how to name it: the whole document, or
    ``[tool.tidegate]`` of a file named pyproject.toml."""
    document = _read_toml(path)
    label = os.path.abspath(path)
    if os.path.basename(path) != "pyproject.toml":
        return document, label
    table: Any = document
    for name in PYPROJECT_TABLE:
        table = table.get(name) if isinstance(table, dict) else None
    if not isinstance(table, dict):
        raise ValueError("has no [tool.tidegate] table")
    return table, f"{label} [tool.tidegate]"


def _find_pyproject(directory: str) -> Optional[str]:
    """``directory``/pyproject.toml if it exists and has a ``[tool.tidegate]`` table."""
    path = os.path.join(directory, "pyproject.toml")
    if not os.path.isfile(path):
        return None
    try:
        document = _read_toml(path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {os.path.abspath(path)}: {error}") from None
    tool = document.get("tool")
    if isinstance(tool, dict) and "tidegate" in tool:
        return path
    return None


def _values_from_file(
    options: Mapping[str, _Option], table: Mapping[str, Any], label: str
) -> Dict[str, Tuple[Any, Any]]:
    """``{dest: (value, raw)}`` from a file's table; errors name the key and the file."""
    values: Dict[str, Tuple[Any, Any]] = {}
    seen: Dict[str, str] = {}
    for key, raw in table.items():
        normal = _normalise(key)
        option = options.get(normal)
        if option is None:
            raise ConfigError(f"unknown key {key!r} in {label}{_suggest(normal, options)}")
        if normal in seen:
            raise ConfigError(f"key {key!r} in {label}: given twice (also as {seen[normal]!r})")
        seen[normal] = key
        try:
            values[option.dest] = (_convert_value(option, raw), raw)
        except ConfigError as error:
            raise ConfigError(f"key {key!r} in {label}: {error}") from None
    return values


def _values_from_environment(
    options: Mapping[str, _Option], environ: Mapping[str, str]
) -> Dict[str, Tuple[Any, Any, str]]:
    """``{dest: (value, raw, variable)}`` from the ``TIDEGATE_*`` variables; an empty
    variable counts as unset; errors name the variable."""
    by_variable = {option.env: option for option in options.values()}
    values: Dict[str, Tuple[Any, Any, str]] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        option = by_variable.get(name)
        if option is None:
            import difflib

            close = difflib.get_close_matches(name, list(by_variable), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown environment variable {name}{hint}")
        text = environ[name]
        if text == "":
            continue
        try:
            values[option.dest] = (_from_environment(option, text), text, name)
        except ConfigError as error:
            raise ConfigError(f"environment variable {name}: {error}") from None
    return values


def _suggest(key: str, options: Mapping[str, _Option]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- the whole --------------------------------------------------------------------------------


class _Setting:
    """The effective value of one destination and where it came from."""

    def __init__(self, option: _Option, value: Any, source: str, raw: Any = _UNSET):
        self.option = option
        self.value = value
        self.source = source
        self.raw = raw


def parse_configured_args(
    parser: argparse.ArgumentParser,
    args: Sequence[str],
    environ: Optional[Mapping[str, str]] = None,
) -> argparse.Namespace:
    """Parse ``args`` and merge them over the environment, the configuration file and the
    defaults; exits with status 2 (``parser.error``) on any bad value, naming its source.

    With ``--print-config`` the effective configuration is printed and the process exits 0.

    With ``--protocol cgi`` on the command line, neither the file nor the environment is
    read: a CGI script's environment is made by the web server for the request, and its
    options are on its ``#!`` line; ``protocol = "cgi"`` from a file or variable is refused.
    """
    if environ is None:
        environ = os.environ
    cli, raws, required = _parse_command_line(parser, args)
    options = _configurable(parser)
    by_key = {option.key: option for option in options}
    first_by_dest: Dict[str, _Option] = {}
    for option in options:
        first_by_dest.setdefault(option.dest, option)

    settings: Dict[str, _Setting] = {}
    for option in first_by_dest.values():
        settings[option.dest] = _Setting(option, option.default(), "default")

    notes: List[str] = []
    cgi = getattr(cli, "protocol", _UNSET) == "cgi"
    try:
        if cgi:
            notes.append("--protocol cgi: configuration files and TIDEGATE_* variables "
                         "do not apply")
        else:
            env_values = _values_from_environment(by_key, environ)
            file_values, label = _file_values(by_key, cli, env_values, environ)
            notes.append(f"configuration file: {label}" if label else
                         "configuration file: none")
            for dest, (value, raw) in file_values.items():
                settings[dest] = _Setting(first_by_dest[dest], value, label or "", raw)
            for dest, (value, raw, name) in env_values.items():
                settings[dest] = _Setting(first_by_dest[dest], value, name, raw)
            _refuse_cgi(settings)
    except ConfigError as error:
        parser.error(str(error))

    for dest, setting in settings.items():
        option = setting.option
        if _given_on_command_line(option, cli):
            value = getattr(cli, dest)
            default = option.action.default
            if isinstance(option.action, argparse._AppendAction) and isinstance(default, list):
                value = list(default) + value  # argparse appends to a list default
            setting.value, setting.source = value, "the command line"
            given = raws.get(dest) or []  # the strings typed, for --print-config
            setting.raw = (given if option.is_list else given[-1]) if given else _UNSET
        setattr(cli, dest, setting.value)
    setattr(cli, _SOURCES_ATTRIBUTE, {dest: (s.option.key, s.source) for dest, s in settings.items()})
    # What no configurable action owns (--config, --print-config, hidden positionals) gets
    # its default back where it was not given.
    defaults: Dict[str, Any] = {}
    for action in parser._actions:
        defaults.setdefault(action.dest, action.default)
    for name, value in vars(cli).items():
        if name not in settings and (value is _UNSET or value is None):
            setattr(cli, name, defaults.get(name))

    if getattr(cli, _PRINT_DEST, False):
        sys.stdout.write(format_config(settings.values(), notes))
        sys.stdout.flush()
        parser.exit(0)

    missing = [
        _Option(action, parser).describe() for action in required
        if getattr(cli, action.dest, None) in (None, _UNSET)
    ]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return cli


def origin(options: Any, dest: str, argument: str) -> str:
    """How an error found after parsing names the option ``dest``: ``argument`` (such as
    ``"argument --chdir"``) when it came from the command line or its default, else the key
    and its file, or the variable."""
    sources: Dict[str, Tuple[str, str]] = getattr(options, _SOURCES_ATTRIBUTE, {})
    key, source = sources.get(dest, ("", "the command line"))
    if source in ("the command line", "default"):
        return argument
    if source.startswith(ENV_PREFIX):
        return f"environment variable {source}"
    return f"key {key!r} in {source}"


def _file_values(
    by_key: Mapping[str, _Option],
    cli: argparse.Namespace,
    env_values: Mapping[str, Tuple[Any, Any, str]],
    environ: Mapping[str, str],
) -> Tuple[Dict[str, Tuple[Any, Any]], Optional[str]]:
    """The values of the configuration file, if any, and its label: ``--config``, else
    ``TIDEGATE_CONFIG``, else ``pyproject.toml`` with a ``[tool.tidegate]`` table in the
    directory of ``--chdir`` (command line, then environment), else the working directory."""
    path = getattr(cli, _CONFIG_DEST, None)
    origin = "argument --config"
    if path in (None, _UNSET):
        path = environ.get(CONFIG_ENV) or None
        origin = f"environment variable {CONFIG_ENV}"
    if path is None:
        directory = getattr(cli, "chdir", _UNSET)
        if directory in (None, _UNSET):
            directory = env_values.get("chdir", (None,))[0]
        path = _find_pyproject(directory or os.curdir)
        if path is None:
            return {}, None
        origin = "pyproject.toml"
    try:
        table, label = _file_table(path)
    except OSError as error:
        raise ConfigError(f"{origin}: cannot read {path!r}: {error.strerror}") from None
    except ValueError as error:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{origin}: {os.path.abspath(path)}: {error}") from None
    return _values_from_file(by_key, table, label), label


def _refuse_cgi(settings: Mapping[str, _Setting]) -> None:
    setting = settings.get("protocol")
    if setting is not None and setting.value == "cgi" and setting.source != "default":
        where = (f"environment variable {setting.source}" if setting.source.startswith(ENV_PREFIX)
                 else f"key {setting.option.key!r} in {setting.source}")
        raise ConfigError(f"{where}: 'cgi' is only accepted on the command line (a CGI "
                          "script's #! line): files and TIDEGATE_* variables do not apply to CGI")


# --- --print-config ---------------------------------------------------------------------------


def format_config(settings: Iterable[_Setting], notes: Sequence[str] = ()) -> str:
    """The settings as a TOML document, each line commented with its source. A value that
    TOML cannot hold (an option without value) is shown as a comment."""
    from tidegate import __version__

    lines = [f"# tidegate {__version__}: effective configuration"]
    lines.extend(f"# {note}" for note in notes)
    for setting in settings:
        source = "default" if setting.source == "default" else f"from {setting.source}"
        key = setting.option.key
        try:
            text = _printable(setting)
        except ValueError:
            lines.append(f"# {key}: not set  ({source})" if setting.value is None else
                         f"# {key}: {setting.value!r} cannot be written in TOML  ({source})")
            continue
        lines.append(f"{key} = {text}  # {source}")
    return "\n".join(lines) + "\n"


def _printable(setting: _Setting) -> str:
    """The TOML text of a setting, written so that reading it back gives the same value:
    the value itself when the option's converter gives it back from its text, else the
    text it was given as."""
    option, value = setting.option, setting.value
    if value is None:
        raise ValueError("no value")
    if option.is_flag:
        action = option.action
        if isinstance(action, (argparse.BooleanOptionalAction, argparse._CountAction)):
            return _toml_value(value)
        if value == action.const and not isinstance(action, argparse._AppendConstAction):
            return "true"
        if value == option.default():
            return "false"
        raise ValueError("not a boolean")
    if option.is_list:
        if option.items_are_lists:
            return _toml_value([[_item_text(option, i, _UNSET) for i in v] for v in value])
        raws = setting.raw if isinstance(setting.raw, list) else [_UNSET] * len(value)
        if len(raws) != len(value):
            raws = [_UNSET] * len(value)
        return "[" + ", ".join(_toml_value(_item_text(option, v, r))
                               for v, r in zip(value, raws)) + "]"
    return _toml_value(_item_text(option, value, setting.raw))


def _item_text(option: _Option, value: Any, raw: Any) -> Any:
    convert = option.convert
    if convert is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float, str)):
        try:
            if convert(value if isinstance(value, str) else repr(value)) == value:
                return value
        except Exception:  # noqa: BLE001 - the converter refusing its own result's text
            pass
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return raw
    raise ValueError("no text gives this value back")


def _toml_value(value: Any) -> str:
    """``value`` as TOML text; ValueError if TOML has no such value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise ValueError(f"{type(value).__name__} has no TOML form")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def _toml_string(text: str) -> str:
    return '"' + "".join(_escaped(char) for char in text) + '"'


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return f"\\u{code:04X}"
    if 0xD800 <= code <= 0xDFFF:  # an undecodable byte kept by os.environ (surrogateescape)
        raise ValueError("not representable in TOML")
    return char
