"""The command line, checked before Hydra starts: unknown keys named with the closest valid
ones, group options checked, dict values spread, and the run folder decided and claimed."""
from __future__ import annotations

import json
import re
from pathlib import Path

from bertlab.errors import exit_usage

# Hydra's options that take a value (the next word)
VALUED = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
          "--config-dir", "-cd", "--experimental-rerun"}


def override_args(argv: list[str]) -> list[str]:
    """The overrides of a command line: what is neither a flag nor a flag's value."""
    return [a for i, a in enumerate(argv) if not a.startswith("-") and not (i and argv[i - 1] in VALUED)]


def keys_of(node, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    out = []
    for k in node.keys() if isinstance(node, DictConfig) else []:
        path = f"{prefix}{k}"
        out.append(path)
        child = node._get_node(k, validate_access=False)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            out += keys_of(child, path + ".")
    return out


def get_node(cfg, key: str):
    """The config node at `key`, unresolved (None if there is none)."""
    from omegaconf import DictConfig

    node = cfg
    for part in key.split("."):
        child = node._get_node(part, validate_access=False) if isinstance(node, DictConfig) else None
        if child is None:
            return None
        node = child
    return node


def has_key(cfg, key: str) -> bool:
    return get_node(cfg, key) is not None


def open_dict_node(node) -> bool:
    """A dict that is empty or null by default: users add their own keys to it."""
    from omegaconf import DictConfig

    if node is None or node._is_interpolation():
        return False
    return node._is_none() or isinstance(node, DictConfig) and len(node) == 0


def closest(key: str, keys: list[str]) -> str:
    import difflib

    leaf: dict[str, str] = {}
    for k in sorted(keys, key=len, reverse=True):  # a leaf name stands for its shortest key
        leaf[k.rsplit(".", 1)[-1]] = k
    found = difflib.get_close_matches(key, keys, n=3, cutoff=0.8)
    found += [leaf[m] for m in difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaf), n=3,
                                                          cutoff=0.75) if leaf[m] not in found]
    return ", ".join(found[:3])


def compose_for_check(conf_dir: Path, config_name: str, overrides: list[str]):
    """The config these overrides make; what Hydra would refuse is one line here."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=True)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        cause = str(e.__cause__ or "").strip().splitlines()
        exit_usage(" ".join(lines[:1] + ([cause[0]] if cause and cause[0] not in lines[:1] else []))
              or type(e).__name__)
    finally:
        GlobalHydra.instance().clear()


def quoted(value) -> str:
    """`value` as an override value: quoted when Hydra's grammar would split or refuse it (a sweep
    job's folder holds '=': `3_lr=3e-05`)."""
    text = str(value)
    if re.fullmatch(r"[\w./:+~@%-]+", text):
        return text
    return "'" + text.replace("'", "\\'") + "'"


def override_value(arg: str) -> str:
    """The value of `key=value` as Hydra reads it (quotes removed: `run_dir='sweep/0_lr=1e-05'`),
    or as typed where it is not Hydra syntax (check_overrides reports that)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return str(OverridesParser.create().parse_override(arg).value())
    except Exception:
        return arg.split("=", 1)[1]


def syntax_error(args: list[str], error: Exception) -> str:
    """Hydra's syntax error as one line naming the override it is in; a value that holds `=` (a
    sweep's job folder, `3_lr=3e-05`) is told how to quote it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    message = str(error).strip().splitlines()[0]
    for arg in args:
        try:
            OverridesParser.create().parse_overrides([arg])
        except Exception:
            key, _, value = arg.partition("=")
            hint = f"; a value that holds '=' needs quotes: \"{key}='{value}'\"" if "=" in value else ""
            return f"{arg}: {message}{hint}"
    return message


def check_overrides(argv: list[str], conf_dir: Path, config_name: str):
    """Refuse unknown keys with the closest valid ones (Hydra's struct error suggests `+key=`,
    which then trains with a key nothing reads); let a key inside an open dict (one that is
    empty by default, like model.config_overrides) be set without `+`; and spread a dict value
    over an existing dict key by key (`data.read_kwargs={encoding: latin-1}` adds to the
    defaults instead of failing).

    Returns the rewritten argv and the config it makes (a sweep's swept values left out): the
    one composition before Hydra's own, which place_output reads too."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = override_args(argv)
    for a in args:
        if "=" not in a and not a.startswith("~"):
            exit_usage(f"{a!r} is not an override; use key=value or group=option (--help lists them)")
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as e:
        exit_usage(syntax_error(args, e))
    multirun = any(a in ("-m", "--multirun") or a == "hydra.mode=MULTIRUN" for a in argv)
    sweep = next((o for o in parsed if o.is_sweep_override()), None)
    if sweep is not None and not multirun:  # (Hydra: "Ambiguous value", its hints cut off)
        group = (conf_dir / sweep.key_or_group).is_dir()
        exit_usage(f"{sweep.input_line} is a sweep; add -m for one run per value (python "
                   f"{config_name}.py -m {sweep.input_line})" + ("" if group else
                   f", or give a list as {sweep.get_key_element()}=[...]"))
    groups, plain = [], []
    for o in parsed:
        is_group = (conf_dir / o.key_or_group).is_dir() or o.key_or_group.startswith("hydra/")
        if o.key_or_group.startswith("hydra") or is_group:
            if is_group and not o.key_or_group.startswith("hydra") and o.is_sweep_override():
                first = next(iter(o.sweep_string_iterator()), None)
                if first is not None:
                    groups.append(f"{o.get_key_element()}={first}")
                continue
            groups.append(o.input_line)
        else:
            plain.append(o)
    cfg = compose_for_check(conf_dir, config_name, groups)
    rewritten = checked_values(plain, cfg, config_name)
    if rewritten:
        argv = [x for a in argv for x in rewritten.get(a, [a])]
    lines = [x for o in plain if not o.is_sweep_override() for x in rewritten.get(o.input_line,
                                                                                  [o.input_line])]
    apply_values(cfg, lines)
    return argv, cfg


def apply_values(cfg, lines: list[str]) -> None:
    """Apply key=value overrides to a composed config in place, as Hydra's compose applies them
    after the groups (its own function); what Hydra would refuse is one line here."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import read_write

    try:
        with read_write(cfg):
            ConfigLoaderImpl._apply_overrides_to_config(
                OverridesParser.create().parse_overrides(lines), cfg)
    except Exception as e:
        cause = str(e.__cause__ or "").strip().splitlines()
        exit_usage(" ".join(str(e).strip().splitlines()[:1] + cause[:1]) or type(e).__name__)


def checked_values(plain: list, cfg, config_name: str) -> dict[str, list[str]]:
    """Each key=value override checked against the composed `cfg` (a known key, a true/false
    switch given true or false); the ones to rewrite (open dicts, dict values) and how."""
    from hydra.core.override_parser.types import OverrideType
    from omegaconf import DictConfig

    keys = [k for k in keys_of(cfg) if not k.startswith("hydra")]
    rewritten = {}
    for o in plain:
        key = o.key_or_group
        missing = not has_key(cfg, key)
        parent = key.rsplit(".", 1)[0] if "." in key else None
        open_dict = parent and open_dict_node(get_node(cfg, parent))
        if o.type == OverrideType.CHANGE and missing:
            if open_dict:
                rewritten[o.input_line] = ["+" + o.input_line]  # an open dict: add the key
                continue
            hint = closest(key, keys)
            exit_usage(f"{key} is not a key of this config" + (f"; did you mean {hint}?" if hint else
                  "") + f" (`python {config_name}.py --cfg job` lists them all)")
        if o.type == OverrideType.DEL and missing:
            exit_usage(f"~{key} removes a key that is not in this config; keys near it: "
                  f"{closest(key, keys) or 'none'}")
        value = o.value() if not o.is_sweep_override() else None
        node = None if missing else get_node(cfg, key)
        if o.type == OverrideType.CHANGE:
            check_switch(key, node, list(o.sweep_string_iterator()) if o.is_sweep_override()
                         else [value])
        if o.type == OverrideType.CHANGE and isinstance(value, dict) and \
                isinstance(node, DictConfig) and value:
            rewritten[o.input_line] = [
                f"{'' if k in node else '+'}{key}.{k}={json.dumps(v)}" for k, v in value.items()]
    return rewritten


# switches that also take a word (Lightning's own: deterministic="warn", save_last="link")
SWITCH_WORDS = {"trainer.deterministic": ("warn",), "callbacks.last_checkpoint.save_last": ("link",)}


def check_switch(key: str, node, values: list) -> None:
    """A key that is true or false by default takes only true or false (and null where it was
    not): a word such as `int8=maybe` would be read as true."""
    from omegaconf import ValueNode

    if not isinstance(node, ValueNode) or node._is_interpolation() or \
            not isinstance(node._value(), bool):
        return
    words = SWITCH_WORDS.get(key, ())
    for v in values:
        if isinstance(v, str) and v.lower() in ("true", "false"):  # (a sweep's values are words)
            continue
        if not isinstance(v, bool) and v not in words:
            exit_usage(f"{key}={v!r} is not valid; use true or false"
                       + "".join(f" or {w}" for w in words))


def check_group_choices(argv: list[str], conf_dir: Path) -> None:
    """Exit with one line when an override names a config-group option that does not exist.

    Hydra reports this too, but over a dozen lines, after its start-up; this runs first.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if not a.startswith("-") and "=" in a]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:
        return  # Hydra will report the syntax error itself
    for o in overrides:
        group = o.key_or_group
        folder = conf_dir / group
        if o.is_delete() or not folder.is_dir() or o.package or group.startswith("hydra"):
            continue  # hydra/* groups also have options from plugins: Hydra checks those
        values = o.value()
        valid = sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "base")
        if values is None:  # Hydra: "Config group override must be a string or a list"
            exit_usage(f"{group}=null is not an option; valid: {', '.join(valid)}, "
                       f"or ~{group} to leave the group out")
        values = getattr(values, "list", None) or (
            [values] if isinstance(values, str) else values if isinstance(values, list) else [])
        for v in values:
            if isinstance(v, str) and v not in valid:
                what = (f"holds the keys every {group} option shares, not an option" if v == "base"
                        else "is not an option")
                exit_usage(f"{group}={v} {what}; valid: {', '.join(valid)}")


