"""Resolve an APP string (``module:attr``, ``module``, ``module:factory(...)``) to a WSGI callable.

The forms follow gunicorn's, so a command line that works there works here:

* ``package.module:name`` -- the attribute ``name`` (dotted paths such as ``mod:obj.app`` work);
* ``package.module`` -- the attribute ``application``, else ``app``;
* ``package.module:create_app()`` or ``mod:create_app('prod', debug=False)`` -- call a
  factory with no arguments or with literal arguments only.

Every failure is an :class:`AppLoadError` whose message names the problem; an import that
raised carries the formatted traceback, so the user sees which line of their code failed.
"""

from __future__ import annotations

import importlib
import keyword
import sys

# ast, traceback and typing are imported where needed: a CGI process loads the app on every
# request, and the common APP forms need none of them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from typing import Any, Callable

__all__ = ["AppLoadError", "check_findable", "load_app"]

# Names tried, in order, when APP names only a module.
DEFAULT_ATTRIBUTES = ("application", "app")


class AppLoadError(Exception):
    """APP could not be resolved to a WSGI callable; the message says why."""


def load_app(spec: str) -> Callable[..., Any]:
    """Import and return the WSGI application named by ``spec``."""
    module_name, _, expression = spec.partition(":")
    module_name = module_name.strip()
    if not module_name:
        raise AppLoadError(f"APP {spec!r} names no module; expected MODULE or MODULE:ATTRIBUTE")
    module = _import(module_name, spec)
    if expression:
        app = _evaluate(module, expression.strip(), spec)
    else:
        app = _default_attribute(module, spec)
    if not callable(app):
        raise AppLoadError(
            f"APP {spec!r} is not callable (it is a {type(app).__name__}); "
            "a WSGI application is a callable taking (environ, start_response)"
        )
    return app


def check_findable(spec: str) -> None:
    """Fail early, without running any of the app's code, when the top-level module of
    ``spec`` is nowhere on sys.path (the usual typo). Everything else is checked when a
    worker imports the app."""
    module_name = spec.partition(":")[0].strip()
    if not module_name:
        raise AppLoadError(f"APP {spec!r} names no module; expected MODULE or MODULE:ATTRIBUTE")
    top_level = module_name.split(".")[0]
    if top_level in sys.modules:
        return
    import importlib.machinery

    if importlib.machinery.PathFinder.find_spec(top_level, sys.path) is None:
        raise AppLoadError(
            f"no module named {top_level!r} (APP {spec!r}); searched sys.path: {sys.path!r}"
        )


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Only "this module does not exist" is a naming problem; a missing import *inside*
        # the user's module is their code failing, and deserves the full traceback.
        if error.name is not None and (
            module_name == error.name or module_name.startswith(error.name + ".")
        ):
            raise AppLoadError(
                f"no module named {error.name!r} (APP {spec!r}); "
                f"searched sys.path: {sys.path!r}"
            ) from None
        raise AppLoadError(_import_failure(module_name, spec)) from None
    except BaseException as error:  # noqa: BLE001 - any failure while importing user code
        if isinstance(error, KeyboardInterrupt):
            raise
        raise AppLoadError(_import_failure(module_name, spec)) from None


def _import_failure(module_name: str, spec: str) -> str:
    import traceback

    details = traceback.format_exc().rstrip()
    return f"failed to import module {module_name!r} (APP {spec!r}):\n{details}"


def _default_attribute(module: Any, spec: str) -> Any:
    for name in DEFAULT_ATTRIBUTES:
        if hasattr(module, name):
            return getattr(module, name)
    raise AppLoadError(
        f"module {module.__name__!r} has no attribute named "
        f"{' or '.join(repr(n) for n in DEFAULT_ATTRIBUTES)} (APP {spec!r}); "
        f"name the application explicitly, as in {module.__name__}:NAME"
    )


def _evaluate(module: Any, expression: str, spec: str) -> Any:
    names = expression.split(".")
    if all(name.isidentifier() and not keyword.iskeyword(name) for name in names):
        # NAME or NAME.ATTR, the usual form: no parser needed.
        return _follow(module, names, spec)
    import ast
    import traceback

    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise AppLoadError(
            f"{expression!r} is not a valid attribute name or factory call (APP {spec!r})"
        ) from None
    if isinstance(tree, ast.Call):
        factory = _lookup(module, tree.func, spec)
        try:
            args = [ast.literal_eval(arg) for arg in tree.args]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords}
        except ValueError:
            raise AppLoadError(
                f"factory arguments in {expression!r} must be literals "
                f"(strings, numbers, tuples, lists, dicts, True/False/None) (APP {spec!r})"
            ) from None
        if None in kwargs:
            raise AppLoadError(f"**kwargs are not supported in {expression!r} (APP {spec!r})")
        if not callable(factory):
            raise AppLoadError(f"{ast.unparse(tree.func)!r} is not callable (APP {spec!r})")
        try:
            return factory(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - report any failure of user code
            if isinstance(error, KeyboardInterrupt):
                raise
            details = traceback.format_exc().rstrip()
            raise AppLoadError(
                f"the factory {expression!r} raised (APP {spec!r}):\n{details}"
            ) from None
    return _lookup(module, tree, spec)


def _lookup(module: Any, node: ast.expr, spec: str) -> Any:
    """Follow a ``name`` or ``name.attr.attr`` expression from the module."""
    import ast

    path: list[str] = []
    while isinstance(node, ast.Attribute):
        path.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppLoadError(
            f"{ast.unparse(node)!r} is not an attribute name (APP {spec!r}); "
            "expected NAME, NAME.ATTR or NAME(literal arguments)"
        )
    path.append(node.id)
    return _follow(module, list(reversed(path)), spec)


def _follow(module: Any, names: list[str], spec: str) -> Any:
    """The attribute ``names[0].names[1]...`` of the module."""
    target = module
    where = module.__name__
    for name in names:
        try:
            target = getattr(target, name)
        except AttributeError:
            raise AppLoadError(f"{where!r} has no attribute {name!r} (APP {spec!r})") from None
        where = f"{where}.{name}"
    return target
