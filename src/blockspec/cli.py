"""The `blockspec` command: validate, show and inspect config files."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .config import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blockspec", description="Validate and inspect blockspec model configs.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check config files; print nothing but errors")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(run=_validate)

    show = commands.add_parser("show", help="print a config as YAML, optionally with overrides")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--resolved", action="store_true", help="print every value a build uses, defaults included")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. transformer.num_layers=4")
    show.add_argument("--parameters", action="store_true", help="also print the parameter count (computed from the config)")
    show.set_defaults(run=_show)

    schema = commands.add_parser("schema", help="print the JSON Schema of model configs")
    schema.set_defaults(run=_schema)
    return parser


def _validate(args: argparse.Namespace) -> int:
    from .loading import load_config

    failed = 0
    for path in args.files:
        try:
            load_config(path)
        except ConfigError as error:
            failed += 1
            print(f"error: {error}", file=sys.stderr)
    return 1 if failed else 0


def _show(args: argparse.Namespace) -> int:
    from .loading import load_config

    config = load_config(args.file)
    if args.set:
        config = config.with_overrides(dict(_split_override(item) for item in args.set))
    print(config.to_yaml(resolved=args.resolved), end="")
    if args.parameters and hasattr(config, "num_parameters"):
        print(f"# parameters: {config.num_parameters():,}")
    return 0


def _split_override(item: str) -> tuple[str, str]:
    key, separator, value = item.partition("=")
    if not separator or not key:
        raise ConfigError(f"invalid override {item!r}: expected KEY=VALUE, e.g. transformer.num_layers=4")
    return key.strip(), value


def _schema(args: argparse.Namespace) -> int:
    from .config.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
