"""Rules as data: one YAML file per product, checked before anything runs, with errors that
name the file, the line and the field. PyYAML's composer keeps each node's position, so the
checks walk the nodes rather than the plain values.

A file (docs/services.md has a whole one)::

    product: coffee
    consumables:
      beans: {counter: brews, per_use: 0.012, capacity: 1.0, lead_time_days: 3}
    tariff: {currency: EUR, minimum: 20, prices: {brews: 0.15}}
    rules:
      - name: descale
        when: {counter: brews, every: 500}
        do: [{webhook: {url: "https://crm.example.com/hooks/descale", tries: 5}}]

Conditions (`when`, one per rule) and actions (`do`, one or more) are the tables CONDITIONS
and ACTIONS below: what each takes, of which type, and what it defaults to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from musket.services.errors import RulesError

PRODUCT = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
OP = re.compile(r"[a-z]{1,16}")

# Field types: name -> (python type(s), what to say when it is wrong).
_NUM = ((int, float), "a number")
_POS = ("positive", "a number above 0")
_INT = ("count", "a whole number above 0")
_STR = (str, "text")
_MAP = (dict, "a mapping")

# condition -> {field: (type, default or REQUIRED)}; the first field names the condition.
REQUIRED = object()
CONDITIONS: dict[str, dict[str, tuple]] = {
    "counter": {"counter": (_STR, REQUIRED), "every": (_POS, REQUIRED)},
    "consumable": {"consumable": (_STR, REQUIRED)},
    "reboots": {"reboots": (_INT, REQUIRED), "within_hours": (_POS, 24.0)},
    "diagnosis": {"diagnosis": (_STR, REQUIRED)},  # a code, "SENSOR_*" or "any"
    "sensor_fault": {"sensor_fault": (_STR, REQUIRED), "for_hours": (_POS, 1.0)},
    "signal_below": {"signal_below": (_NUM, REQUIRED), "for_days": (_POS, 3.0)},
    "silent_hours": {"silent_hours": (_POS, REQUIRED)},
    "data_share": {"data_share": (_POS, REQUIRED)},  # percent of the SIM plan's data
}
ACTIONS: dict[str, dict[str, tuple]] = {
    "webhook": {"url": (_STR, REQUIRED), "tries": (_INT, 8)},
    "sink": {"path": (_STR, REQUIRED), "format": (_STR, "jsonl")},
    "order": {"quantity": (_POS, None)},
    "ticket": {"problem": (_STR, None), "healthy_after_hours": (_POS, 1.0)},
    "command": {"op": (_STR, REQUIRED), "args": (_MAP, {}), "tries": (_INT, 5)},
}
CONSUMABLE = {"counter": (_STR, REQUIRED), "per_use": (_POS, REQUIRED),
              "capacity": (_POS, REQUIRED), "lead_time_days": (_POS, REQUIRED),
              "margin_days": (_POS, 1.0), "order_quantity": (_POS, 1.0),
              "rate_window_days": (_POS, 7.0)}
TARIFF = {"currency": (_STR, REQUIRED), "minimum": (_NUM, 0.0), "prices": (_MAP, REQUIRED)}
SINK_FORMATS = ("jsonl", "csv")
TOP = {"product", "consumables", "tariff", "customer_tariffs", "rules"}


@dataclass(frozen=True)
class Consumable:
    name: str
    counter: str
    per_use: float
    capacity: float
    lead_time_days: float
    margin_days: float
    order_quantity: float
    rate_window_days: float


@dataclass(frozen=True)
class Action:
    kind: str
    params: dict


@dataclass(frozen=True)
class Rule:
    name: str
    condition: str
    params: dict
    actions: tuple[Action, ...]
    line: int


@dataclass
class Product:
    name: str
    source: str
    consumables: dict[str, Consumable] = field(default_factory=dict)
    tariff: dict | None = None
    # A customer's own prices (a contract) for this product's counters: {customer_id: tariff}
    customer_tariffs: dict[str, dict] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def bad(self, node: Node, where: str, what: str) -> None:
        self.problems.append(f"{self.source}:{node.start_mark.line + 1}: {where}: {what}")

    def mapping(self, node: Node, where: str) -> dict[str, tuple[Node, Node]] | None:
        if not isinstance(node, MappingNode):
            self.bad(node, where, "must be a mapping (key: value)")
            return None
        out = {}
        for k, v in node.value:
            if not isinstance(k, ScalarNode):
                self.bad(k, where, "a key must be plain text")
            elif k.value in out:
                self.bad(k, f"{where}.{k.value}", "given twice")
            else:
                out[k.value] = (k, v)
        return out

    def value(self, node: Node, where: str, kind: tuple):
        value = yaml.safe_load(yaml.serialize(node)) if node is not None else None
        expected, what = kind
        ok = {"positive": lambda v: _is_num(v) and v > 0,
              "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0
              }.get(expected, lambda v: isinstance(v, expected) and not isinstance(v, bool))
        if not ok(value):
            self.bad(node, where, f"must be {what}, not {value!r}")
            return None
        return value

    def fields(self, node: Node, where: str, spec: dict[str, tuple]) -> dict | None:
        items = self.mapping(node, where)
        if items is None:
            return None
        out = {}
        for key, (k, _) in items.items():
            if key not in spec:
                self.bad(k, f"{where}.{key}", f"unknown field (known: {', '.join(spec)})")
        for name, (kind, default) in spec.items():
            if name in items:
                out[name] = self.value(items[name][1], f"{where}.{name}", kind)
            elif default is REQUIRED:
                self.bad(node, f"{where}.{name}", "missing")
                out[name] = None
            else:
                out[name] = default
        return out


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse(text: str, source: str = "<rules>") -> Product:
    """The product a rules file describes; raises RulesError naming every problem's line."""
    check = _Checker(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RulesError(f"{source}{line}: not YAML: {getattr(e, 'problem', e)}") from None
    if root is None:
        raise RulesError(f"{source}: empty")
    top = check.mapping(root, "file") or {}
    for key, (k, _) in top.items():
        if key not in TOP:
            check.bad(k, key, f"unknown section (known: {', '.join(sorted(TOP))})")
    name = ""
    if "product" not in top:
        check.bad(root, "product", "missing")
    else:
        name = check.value(top["product"][1], "product", _STR) or ""
        if name and not PRODUCT.fullmatch(name):
            check.bad(top["product"][1], "product", "1-32 lower-case letters, digits, _ -")
    product = Product(name, source)
    if "consumables" in top:
        for key, (_, v) in (check.mapping(top["consumables"][1], "consumables") or {}).items():
            spec = check.fields(v, f"consumables.{key}", CONSUMABLE)
            if spec and None not in spec.values():
                product.consumables[key] = Consumable(key, **spec)
    if "tariff" in top:
        product.tariff = _tariff(check, top["tariff"][1], "tariff")
    if "customer_tariffs" in top:
        items = check.mapping(top["customer_tariffs"][1], "customer_tariffs") or {}
        for customer, (_, v) in items.items():
            tariff = _tariff(check, v, f"customer_tariffs.{customer}")
            if tariff:
                product.customer_tariffs[customer] = tariff
    rules_node = top.get("rules", (None, None))[1]
    if rules_node is not None and not isinstance(rules_node, SequenceNode):
        check.bad(rules_node, "rules", "must be a list of rules")
    elif rules_node is not None:
        names: set[str] = set()
        for i, node in enumerate(rules_node.value):
            rule = _rule(check, node, f"rules[{i}]", product)
            if rule and rule.name in names:
                check.bad(node, f"rules[{i}].name", f"{rule.name!r} is used by another rule")
            elif rule:
                names.add(rule.name)
                product.rules.append(rule)
    if check.problems:
        raise RulesError("; ".join(check.problems))
    return product


def _tariff(check: _Checker, node: Node, where: str) -> dict | None:
    tariff = check.fields(node, where, TARIFF)
    if not tariff or tariff["prices"] is None:
        return None
    for counter, price in tariff["prices"].items():
        if not _is_num(price) or price < 0:
            check.bad(node, f"{where}.prices.{counter}",
                      f"must be a price of 0 or more, not {price!r}")
    if not re.fullmatch(r"[A-Z]{3}", str(tariff["currency"])):
        check.bad(node, f"{where}.currency", "an ISO 4217 code like EUR")
    return tariff


def _rule(check: _Checker, node: Node, where: str, product: Product) -> Rule | None:
    items = check.mapping(node, where)
    if items is None:
        return None
    for key, (k, _) in items.items():
        if key not in ("name", "when", "do"):
            check.bad(k, f"{where}.{key}", "unknown field (known: name, when, do)")
    for key in ("name", "when", "do"):
        if key not in items:
            check.bad(node, f"{where}.{key}", "missing")
    if len([k for k in ("name", "when", "do") if k in items]) < 3:
        return None
    name = check.value(items["name"][1], f"{where}.name", _STR)
    if name is not None and not NAME.fullmatch(name):
        check.bad(items["name"][1], f"{where}.name", "1-48 letters, digits, _ . -")
        name = None
    when = items["when"][1]
    kinds = [k for k in (check.mapping(when, f"{where}.when") or {}) if k in CONDITIONS]
    if len(kinds) != 1:
        check.bad(when, f"{where}.when", "needs exactly one condition of: " +
                  ", ".join(CONDITIONS))
        return None
    condition = kinds[0]
    params = check.fields(when, f"{where}.when", CONDITIONS[condition])
    if params is None:
        return None
    where_when = f"{where}.when.{condition}"
    if condition == "consumable" and params["consumable"] not in product.consumables:
        check.bad(when, where_when, f"no consumable {params['consumable']!r} in consumables")
    actions = _actions(check, items["do"][1], f"{where}.do", condition)
    if name is None or None in [v for k, v in params.items()
                                if CONDITIONS[condition][k][1] is REQUIRED] or actions is None:
        return None
    return Rule(name, condition, params, actions, node.start_mark.line + 1)


def _actions(check: _Checker, node: Node, where: str, condition: str
             ) -> tuple[Action, ...] | None:
    if not isinstance(node, SequenceNode) or not node.value:
        check.bad(node, where, "must be a list of one or more actions")
        return None
    out = []
    for i, item in enumerate(node.value):
        at = f"{where}[{i}]"
        items = check.mapping(item, at)
        if items is None:
            continue
        if len(items) != 1 or next(iter(items)) not in ACTIONS:
            check.bad(item, at, "one action of: " + ", ".join(ACTIONS))
            continue
        kind, (_, body) = next(iter(items.items()))
        if isinstance(body, ScalarNode) and body.value in ("", "~", "null"):
            body = MappingNode("tag:yaml.org,2002:map", [], body.start_mark, body.end_mark)
        params = check.fields(body, f"{at}.{kind}", ACTIONS[kind])
        if params is None:
            continue
        if kind == "order" and condition != "consumable":
            check.bad(item, f"{at}.order", "an order needs a `consumable` condition")
        if kind == "sink" and params["format"] not in SINK_FORMATS:
            check.bad(body, f"{at}.sink.format", f"one of {', '.join(SINK_FORMATS)}")
        if kind == "command" and params["op"] is not None and not OP.fullmatch(params["op"]):
            check.bad(body, f"{at}.command.op", "a device command's op (lower-case letters)")
        if kind == "webhook" and params["url"] and not re.match(r"https?://", params["url"]):
            check.bad(body, f"{at}.webhook.url", "an http:// or https:// URL")
        out.append(Action(kind, params))
    return tuple(out) if len(out) == len(node.value) else None


def load(path: str | Path) -> Product:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RulesError(f"{path}: cannot read: {e}") from None
    return parse(text, path.name)


def load_all(paths) -> dict[str, Product]:
    """Each file's product (a directory: its *.yaml files); a product given twice is an
    error, and every file's problems are reported together."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")) if p.is_dir() else [p]
    if not files:
        raise RulesError("no rules files given (a file, or a directory of *.yaml)")
    products: dict[str, Product] = {}
    problems = []
    for f in files:
        try:
            product = load(f)
        except RulesError as e:
            problems.append(str(e))
            continue
        if product.name in products:
            problems.append(f"{f.name}: product {product.name!r} is also in "
                            f"{products[product.name].source}")
        products[product.name] = product
    if problems:
        raise RulesError("; ".join(problems))
    return products
