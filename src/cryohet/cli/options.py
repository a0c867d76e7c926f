"""One copy of every default: CLI options read theirs from the config classes.

An option that sets a config field is declared with :func:`config_option` (or takes
:func:`config_default`), so ``cryohet train spire --help`` shows, and the command
uses, exactly what ``SpireConfig`` would use without the option::

    epochs_a: int = config_option(SpireConfig, "stage_a.epochs", "--epochs-a", help="Stage-A epochs.")

Dotted paths go through nested models (``stage_a.epochs``); a nested model's default
instance (``default_factory``) is honoured, so ``SpireConfig().stage_a.epochs`` and the
option agree by construction. Options of plain API functions (no config class) take
theirs from the function's signature (:func:`param_default`). ``tests/test_cli_defaults.py``
checks that every command builds the same config as the class does from the required
values alone.

:func:`examples` formats the ``Example:`` epilog every command shows in ``--help``.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

try:  # typer up to 0.1x uses click; newer releases vendor it as typer._click
    from click.core import ParameterSource
    from click.globals import get_current_context
except ImportError:
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context
from pydantic.fields import FieldInfo

from ..config import validation_message
from ..errors import ConfigError

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "absolute_path",
    "particle_source",
    "config_field",
    "config_default",
    "config_help",
    "config_option",
    "config_error",
    "build_source",
    "build_config",
    "flag_names",
    "param_default",
    "examples",
    "given_fields",
    "overlay_fields",
]


def _field(model: type[BaseModel], name: str, path: str, root: type[BaseModel]) -> FieldInfo:
    try:
        return model.model_fields[name]
    except KeyError:
        raise KeyError(f"{root.__name__} has no field '{path}' ({model.__name__} has no '{name}')") from None


def _model_class(field: FieldInfo, value: Any) -> type[BaseModel] | None:
    """The model type of a nested-model field (``X``, ``X | None``) or of its default value."""
    if isinstance(value, BaseModel):
        return type(value)
    candidates = [field.annotation]
    if typing.get_origin(field.annotation) in (typing.Union, types.UnionType):
        candidates = list(typing.get_args(field.annotation))
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _walk(model: type[BaseModel], path: str) -> tuple[FieldInfo, BaseModel | None]:
    """The field at ``path`` and the default instance of its parent model (None at top level
    or when the parent has no default instance)."""
    *parents, last = path.split(".")
    cls, instance = model, None
    for k, name in enumerate(parents):
        field = _field(cls, name, path, model)
        if instance is not None:
            value = getattr(instance, name)
        else:
            value = None if field.is_required() else field.get_default(call_default_factory=True)
        nested = _model_class(field, value)
        if nested is None:
            raise KeyError(f"{model.__name__}.{'.'.join(parents[: k + 1])} is not a nested config")
        cls, instance = nested, value if isinstance(value, BaseModel) else None
    return _field(cls, last, path, model), instance


def config_field(model: type[BaseModel], path: str) -> FieldInfo:
    """The pydantic field at a dotted ``path`` of ``model`` (``"stage_a.epochs"``)."""
    return _walk(model, path)[0]


def config_default(model: type[BaseModel], path: str) -> Any:
    """The value ``model`` gives the field at ``path`` when it is not set.

    Reads ``default``/``default_factory`` through nested models; a field without a default
    (required) is a ``ValueError``: such an option is required on the command line too.
    """
    field, parent = _walk(model, path)
    if parent is not None:
        return copy.deepcopy(getattr(parent, path.rsplit(".", 1)[-1]))
    if field.is_required():
        raise ValueError(f"{model.__name__}.{path} is required: it has no default")
    return copy.deepcopy(field.get_default(call_default_factory=True))


def config_help(model: type[BaseModel], path: str) -> str | None:
    """The field's description as option help (first letter capitalised, a full stop); None without one."""
    text = (config_field(model, path).description or "").strip()
    if not text:
        return None
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


#: ``id(OptionInfo)`` -> (config class, dotted field) of every option made by :func:`config_option`.
_OPTION_FIELDS: dict[int, tuple[type[BaseModel], str]] = {}
#: (config class, dotted field) -> the flags of its option, short first (``-b/--batch-size``).
_FIELD_FLAGS: dict[tuple[type[BaseModel], str], str] = {}


def config_option(model: type[BaseModel], path: str, *param_decls: str, help: str | None = None, **kwargs: Any) -> Any:
    """``typer.Option`` for a config field: its default from the class and, unless ``help`` is
    given, its help from the field's description."""
    text = help if help is not None else config_help(model, path)
    option = typer.Option(config_default(model, path), *param_decls, help=text, **kwargs)
    _OPTION_FIELDS[id(option)] = (model, path)
    flags = [d for d in param_decls if d.startswith("-")]
    if flags:
        _FIELD_FLAGS[(model, path)] = "/".join(sorted(flags, key=lambda d: d.startswith("--")))
    return option


def flag_names(model: type[BaseModel], prefixes: dict[type[BaseModel], str] | None = None) -> dict[str, str]:
    """Dotted field of ``model`` -> the flags that set it (``{"optim.batch_size": "-b/--batch-size"}``),
    from every :func:`config_option` of ``model`` or a base class; ``prefixes`` places nested
    models' options (``{ParticleSource: "data."}``)."""
    out: dict[str, str] = {}
    for (cls, path), flags in _FIELD_FLAGS.items():
        if issubclass(model, cls):
            out[path] = flags
        for nested, prefix in (prefixes or {}).items():
            if issubclass(nested, cls):
                out[prefix + path] = flags
    return out


def config_error(
    err: ValidationError, model: type[BaseModel], prefixes: dict[type[BaseModel], str] | None = None
) -> ConfigError:
    """The one-line :class:`~cryohet.errors.ConfigError` of a command's invalid options: each
    problem named by the flags that set the field (``-D/--box: box must be even, got 33``).

    ``err`` comes from ``model`` or, validated on its own, from one of the nested models in
    ``prefixes`` (pydantic's ``err.title`` says which)."""
    for nested in prefixes or {}:
        if err.title == nested.__name__ and err.title != model.__name__:
            return ConfigError(validation_message(err, flag_names(nested)))
    return ConfigError(validation_message(err, flag_names(model, prefixes)))


def build_config(model: type[M], **fields: Any) -> M:
    """``model(**fields)`` from a command's options; an invalid value is a one-line
    ``ConfigError`` naming the flags (:func:`config_error`)."""
    try:
        return model(**fields)
    except ValidationError as err:
        raise config_error(err, model) from None


def build_source(**fields: Any) -> Any:
    """:class:`~cryohet.io.source.ParticleSource` of a command's options; an invalid value is
    a one-line ``ConfigError`` naming the flag (``--apix: ...``)."""
    from ..io.source import ParticleSource

    try:
        return ParticleSource(**fields)
    except ValidationError as err:
        raise config_error(err, ParticleSource) from None


def given_fields(
    command: Callable[..., Any], prefixes: dict[type[BaseModel], str] | None = None, extra: dict[str, str] | None = None
) -> set[str]:
    """Dotted config fields set by options the user typed (not defaults) in the running command.

    ``prefixes`` places options of nested models (``{ParticleSource: "data."}``); ``extra``
    maps other parameters to fields (``{"no_anchor_motion": "stage_b.anchor_motion"}``).
    Used by ``--resume``: only what was typed asks for a change to the run's config.
    """
    ctx = get_current_context(silent=True)
    if ctx is None:
        return set()
    out: set[str] = set()
    for name, param in inspect.signature(command).parameters.items():
        if ctx.get_parameter_source(name) not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            continue
        if name in (extra or {}):
            out.add(extra[name])
        elif id(param.default) in _OPTION_FIELDS:
            model, path = _OPTION_FIELDS[id(param.default)]
            out.add((prefixes or {}).get(model, "") + path)
    return out


def overlay_fields(saved: BaseModel, built: BaseModel, fields: set[str]) -> BaseModel:
    """``saved`` with the ``fields`` of ``built`` laid over it (a resume request)."""
    data, new = saved.model_dump(mode="json"), built.model_dump(mode="json")
    for path in fields:
        *parents, last = path.split(".")
        src, dst = new, data
        for p in parents:
            src, dst = src[p], dst.setdefault(p, {})
        dst[last] = src[last]
    return type(saved).model_validate(data)


def resume_config(
    out: Any, built: BaseModel, command: Callable[..., Any] | None, extra: dict[str, str] | None = None
) -> BaseModel:
    """The config of a training command run with ``--resume`` into ``out``: the run's own
    ``config.yaml``, with only the options typed now (:func:`given_fields`; particle options
    under ``data.``) asking for changes (none without ``command``); the run refuses those it cannot take
    (:mod:`cryohet.training.identity`). ``built`` itself when ``out`` has no config yet."""
    from pathlib import Path

    from ..config import load_config
    from ..io.source import ParticleSource

    path = Path(out) / "config.yaml"
    if not path.exists():
        return built
    saved = load_config(path, type(built), drop=("resolved",))
    typed = given_fields(command, {ParticleSource: "data."}, extra) if command is not None else set()
    return overlay_fields(saved, built, typed | {"out", "data.path"})


def param_default(func: Callable[..., Any] | str, name: str) -> Any:
    """The default of parameter ``name`` of an API function (for options of commands with no config).

    ``func`` is the function, or ``"package.module:function"``: then the default is read from
    the module's source (it must be a literal) without importing the module, so a command
    whose API function lives with torch or scipy builds its options without them
    (``tests/test_cli_defaults.py`` checks that both ways agree).
    """
    if isinstance(func, str):
        return _source_default(func, name)
    param = inspect.signature(func).parameters[name]
    if param.default is inspect.Parameter.empty:
        raise ValueError(f"{func.__qualname__}: parameter '{name}' has no default")
    return param.default


def epoch_option(func: Callable[..., Any] | str, help: str) -> Any:
    """``--epoch/-e N`` (counted from 1): the run as it was after epoch N, from its snapshot in
    ``RUN/epochs/``; the default is ``func``'s ``epoch`` parameter's (:func:`param_default`)."""
    return typer.Option(param_default(func, "epoch"), "--epoch", "-e", min=1, help=help)


@functools.cache
def _function_defaults(ref: str) -> dict[str, ast.expr]:
    """Parameter -> default expression of the top-level function ``"cryohet.mod:func"``, from its source."""
    module, _, func = ref.partition(":")
    parts = module.split(".")
    if parts[0] != "cryohet" or not func:
        raise ValueError(f"'{ref}': expected 'cryohet.<module>:<function>'")
    root = Path(__file__).resolve().parents[1].joinpath(*parts[1:])
    path = root / "__init__.py" if root.is_dir() else root.with_suffix(".py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == func:
            args = node.args
            positional = args.posonlyargs + args.args
            out = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults) :]], args.defaults))
            out.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
            out.update({a.arg: None for a in positional + args.kwonlyargs if a.arg not in out})
            return out
    raise ValueError(f"'{ref}': no function '{func}' in {path}")


def _source_default(ref: str, name: str) -> Any:
    defaults = _function_defaults(ref)
    if name not in defaults:
        raise ValueError(f"{ref}: no parameter '{name}'")
    expr = defaults[name]
    if expr is None:
        raise ValueError(f"{ref}: parameter '{name}' has no default")
    try:
        return ast.literal_eval(expr)
    except ValueError:
        raise ValueError(f"{ref}: the default of '{name}' is not a literal ({ast.unparse(expr)})") from None


def examples(*commands: str) -> str:
    """The ``--help`` epilog listing usage examples, one command per line.

    Paragraphs (blank-line separated) render on their own lines with every typer
    version, rich or plain click help, so each command stays copy-pasteable.
    Keep the commands short (< 78 characters): rich wraps lines at the terminal width.
    """
    title = "Example:" if len(commands) == 1 else "Examples:"
    return "\n\n".join([title, *(f"  {c}" for c in commands)])


def absolute_path(p: Path | None) -> Path | None:
    """``p`` with ``~`` expanded and made absolute (a run's config names files wherever it is read)."""
    return None if p is None else Path(p).expanduser().resolve()


def particle_source(
    particles: Path, poses: Path | None, ctf: Path | None, datadir: Path | None, ind: Path | None, apix: float | None
):
    """The :class:`~cryohet.io.source.ParticleSource` of a train command's options, paths
    absolute (raises pydantic's ``ValidationError`` like the configs it goes into)."""
    from ..io.source import ParticleSource

    return ParticleSource(
        path=absolute_path(particles), poses=absolute_path(poses), ctf=absolute_path(ctf),
        datadir=absolute_path(datadir), ind=absolute_path(ind), apix=apix,
    )  # fmt: skip


INVERT_HELP = (
    "Protein is dark in the images: multiply them by -1 (--no-invert: protein bright, keep them). "
    "Default: measured from the images (cryoSPARC blob/sign decides when they are undecided)."
)
UNINVERT_DATA_HELP = (
    "cryoDRGN's flag for stacks with dark protein; cryoDRGN's CTF has the opposite sign to RELION's "
    "(and cryohet's), so it means --invert here."
)


def invert_option(model: type[BaseModel]) -> Any:
    """``--invert/--no-invert`` for a config's ``invert`` field (None: decided from the data)."""
    return config_option(model, "invert", "--invert/--no-invert", help=INVERT_HELP)


def uninvert_data_option() -> Any:
    """cryoDRGN's ``--uninvert-data``, accepted with cryoDRGN's meaning (see :func:`contrast_choice`)."""
    return typer.Option(False, "--uninvert-data", help=UNINVERT_DATA_HELP)


def contrast_choice(invert: bool | None, uninvert_data: bool) -> bool | None:
    """The ``invert`` a command passes on. cryoDRGN's ``--uninvert-data`` keeps a dark-protein
    stack as it is, because cryoDRGN's CTF is negative at low frequency; with RELION's CTF
    (cryohet's) the same stack must be multiplied by -1, so it is ``invert=True`` here: the
    same stack gives the same map in both programs."""
    from ..errors import ConfigError

    if uninvert_data:
        if invert is False:
            raise ConfigError("--uninvert-data (cryoDRGN: protein dark) and --no-invert (protein bright) contradict")
        return True
    return invert
