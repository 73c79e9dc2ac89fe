"""The simulator's device-side shims keep the signatures of the modules they stand in for.

Firmware that runs in the simulator calls sim/chip/machine.py where the device calls the ESP32
port's `machine`. If a shim grows a function the port lacks, renames a parameter or reorders
positional ones, firmware can pass in the simulator and fail on a board. Each shim is read with
`ast` and compared with the port's stubs (micropython-esp32-stubs, which the firmware's type
check also uses): every public class, function and method a shim defines must exist in the
stub, accept every parameter the stub declares (positionals in the stub's order) and require
none the stub makes optional. A shim may accept more; `*args` and `**kwargs` in a shim accept
anything, and a stub's own `*args` and `**kwargs` (an unknown signature) ask for nothing. Of
overloads in a stub, one must match. An alias (`SoftI2C = I2C`) is checked as the name it
defines. Private helpers and module constants are not checked.
"""

import ast
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import pytest

SHIMS = Path(__file__).resolve().parents[2] / "sim" / "chip"
MODULES = ["machine", "esp32", "network", "time", "select"]
STUB_PACKAGES = ["micropython-esp32-stubs", "micropython-stdlib-stubs"]


def stub_path(module):
    """The .pyi of ``module`` (a dotted name) in the installed stub packages, or None."""
    rel = module.replace(".", "/")
    wanted = {rel + ".pyi", rel + "/__init__.pyi", "stdlib/" + rel + ".pyi",
              "stdlib/" + rel + "/__init__.pyi"}
    for name in STUB_PACKAGES:
        dist = metadata.distribution(name)
        for file in dist.files:
            if file.as_posix() in wanted:
                return Path(dist.locate_file(file))
    return None


def parse(path):
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def is_public(name):
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def functions(body):
    """name -> [def, ...] for the functions in ``body``; overloads give several."""
    out = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.setdefault(node.name, []).append(node)
    return out


class Stubs:
    """Classes and functions of stub modules, following imports and base classes."""

    def __init__(self):
        self.trees = {}

    def module(self, name):
        if name not in self.trees:
            path = stub_path(name)
            self.trees[name] = parse(path) if path else ast.Module(body=[], type_ignores=[])
        return self.trees[name]

    def lookup(self, module, name):
        """The ClassDef or [FunctionDef, ...] that ``module.name`` is, or None."""
        tree = self.module(module)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return (module, node)
        found = functions(tree.body).get(name)
        if found:
            return found
        for node in tree.body:  # `from .pin import Pin` in a package's __init__.pyi
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        source = node.module or ""
                        if node.level:
                            source = module + ("." + source if source else "")
                        return self.lookup(source, alias.name)
        return None

    def methods(self, module, cls):
        """name -> [def, ...] for a stub class, base classes' methods included."""
        out = {}
        for base in cls.bases:
            if isinstance(base, ast.Name):
                found = self.lookup(module, base.id)
                if isinstance(found, tuple):
                    out.update(self.methods(*found))
        out.update(functions(cls.body))
        return out


class Signature(NamedTuple):
    names: list  # positional parameters, `self` left out
    posonly: int  # how many of them are positional-only
    required: int  # how many of them have no default
    keyword: dict  # keyword-only name -> True if it has no default
    varargs: bool
    varkw: bool


def signature(fn, method):
    a = fn.args
    positional = a.posonlyargs + a.args
    posonly = len(a.posonlyargs)
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    if method and not is_static and positional:
        positional = positional[1:]
        posonly = max(posonly - 1, 0)
    names = [p.arg for p in positional]
    while posonly < len(names) and names[posonly].startswith("__"):  # pre-3.8 stub spelling
        posonly += 1
    required = len(names) - len(a.defaults)
    keyword = {p.arg: d is None for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)}
    return Signature(names, posonly, required, keyword, a.vararg is not None, a.kwarg is not None)


def differences(shim, stub, method):
    """Why ``shim`` cannot be called every way ``stub`` can; empty if it can."""
    have, want = signature(shim, method), signature(stub, method)
    out = []
    for i, name in enumerate(want.names):
        if i >= len(have.names):
            if not have.varargs:
                out.append("no positional parameter %d (%s)" % (i + 1, name))
        elif i >= want.posonly and have.names[i] != name:
            out.append("positional parameter %d is %r, the stub's is %r"
                       % (i + 1, have.names[i], name))
    for name in want.keyword:
        if name not in have.names and name not in have.keyword and not have.varkw:
            out.append("no keyword parameter %r" % name)
    if not (want.varargs or want.varkw):  # a known signature: nothing more may be required
        for i in range(want.required, have.required):
            out.append("requires %r, which the stub %s" % (
                have.names[i], "makes optional" if i < len(want.names) else "does not declare"))
        for name, needed in have.keyword.items():
            if needed and not want.keyword.get(name):
                out.append("requires keyword %r, which the stub does not" % name)
    return out


def check_function(label, shim, stub_defs, method, problems):
    best = min((differences(shim, stub, method) for stub in stub_defs), key=len)
    problems.extend("%s: %s" % (label, p) for p in best)


def definitions(tree):
    """(name, ClassDef or FunctionDef) for each public name a shim defines, aliases included."""
    defs = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            defs[node.name] = node
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1
              and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Name)
              and node.value.id in defs):  # `SoftI2C = I2C` gives SoftI2C I2C's signatures
            defs[node.targets[0].id] = defs[node.value.id]
    return [(name, node) for name, node in defs.items() if is_public(name)]


def mismatches(module):
    stubs = Stubs()
    problems = []
    for name, node in definitions(parse(SHIMS / (module + ".py"))):
        found = stubs.lookup(module, name)
        if found is None:
            problems.append("%s: not in the ESP32 port's %s" % (name, module))
        elif isinstance(node, ast.FunctionDef):
            if isinstance(found, tuple):
                problems.append("%s: a function here, a class in the stub" % name)
            else:
                check_function(name + "()", node, found, False, problems)
        elif not isinstance(found, tuple):
            problems.append("%s: a class here, a function in the stub" % name)
        else:
            stub_methods = stubs.methods(*found)
            for method, defs in functions(node.body).items():
                label = "%s.%s()" % (name, method)
                if not is_public(method):
                    continue
                if method in stub_methods:
                    check_function(label, defs[-1], stub_methods[method], True, problems)
                elif not method.startswith("__"):  # dunders the stub leaves to `object`
                    problems.append("%s: not in the stub" % label)
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_shim_matches_esp32_port(module):
    assert stub_path(module), "no stub for %s in %s" % (module, ", ".join(STUB_PACKAGES))
    problems = mismatches(module)
    if problems:
        pytest.fail("sim/chip/%s.py differs from the ESP32 port's %s:\n  %s"
                    % (module, module, "\n  ".join(problems)), pytrace=False)
