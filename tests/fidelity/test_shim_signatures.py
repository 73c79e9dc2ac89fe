"""The simulator's device-side shims keep the signatures of the modules they stand in for.

Firmware that runs in the simulator calls sim/shims/machine.py where the device calls the ESP32
port's `machine`. If a shim grows a function the port lacks, renames a parameter or reorders
positional ones, firmware can pass in the simulator and fail on a board. Each shim is read with
`ast` and compared with the port's stubs (micropython-esp32-stubs, which the firmware's type
check also uses): every public class, function and method a shim defines must exist in the
stub, and accept every parameter the stub declares, positionals in the stub's order. A shim may
accept more; `*args` and `**kwargs` in a shim accept anything, and a stub's own `*args` and
`**kwargs` (an unknown signature) ask for nothing. Of overloads in a stub, one must match.
"""

import ast
from importlib import metadata
from pathlib import Path

import pytest

SHIMS = Path(__file__).resolve().parents[2] / "sim" / "shims"
MODULES = ["machine", "esp32", "network", "time", "select"]
STUB_PACKAGES = ["micropython-esp32-stubs", "micropython-stdlib-stubs"]


def stub_path(module):
    """The .pyi of ``module`` (or of package ``module.sub``) in the installed stub packages."""
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


def signature(fn, method):
    """Positional names, how many are positional-only, how many are required, keyword-only
    names -> required, and whether *args / **kwargs are taken."""
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
    return names, posonly, required, keyword, a.vararg is not None, a.kwarg is not None


def differences(shim, stub, method):
    """Why ``shim`` cannot be called every way ``stub`` can; empty if it can."""
    names, _, required, keyword, varargs, varkw = signature(shim, method)
    s_names, s_posonly, s_required, s_keyword, s_varargs, s_varkw = signature(stub, method)
    out = []
    for i, name in enumerate(s_names):
        if i >= len(names):
            if not varargs:
                out.append("no positional parameter %d (%s)" % (i + 1, name))
        elif i >= s_posonly and names[i] != name:
            out.append("positional parameter %d is %r, the stub's is %r" % (i + 1, names[i], name))
    for name in s_keyword:
        if name not in names and name not in keyword and not varkw:
            out.append("no keyword parameter %r" % name)
    if not (s_varargs or s_varkw):  # the stub's signature is known: nothing more is required
        for i in range(s_required, required):
            out.append("requires %r, which the stub %s" % (
                names[i], "makes optional" if i < len(s_names) else "does not declare"))
        for name, needed in keyword.items():
            if needed and not s_keyword.get(name):
                out.append("requires keyword %r, which the stub does not" % name)
    return out


def check_function(label, shim, stub_defs, method, problems):
    best = min((differences(shim, stub, method) for stub in stub_defs), key=len)
    problems.extend("%s: %s" % (label, p) for p in best)


def mismatches(module):
    stubs = Stubs()
    problems = []
    for node in parse(SHIMS / (module + ".py")).body:
        if not isinstance(node, ast.ClassDef | ast.FunctionDef) or not is_public(node.name):
            continue
        found = stubs.lookup(module, node.name)
        if found is None:
            problems.append("%s: not in the ESP32 port's %s" % (node.name, module))
        elif isinstance(node, ast.FunctionDef):
            if isinstance(found, tuple):
                problems.append("%s: a function here, a class in the stub" % node.name)
            else:
                check_function(node.name + "()", node, found, False, problems)
        elif not isinstance(found, tuple):
            problems.append("%s: a class here, a function in the stub" % node.name)
        else:
            stub_methods = stubs.methods(*found)
            for name, defs in functions(node.body).items():
                label = "%s.%s()" % (node.name, name)
                if not is_public(name):
                    continue
                if name in stub_methods:
                    check_function(label, defs[-1], stub_methods[name], True, problems)
                elif not name.startswith("__"):  # dunders the stub leaves to `object`
                    problems.append("%s: not in the stub" % label)
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_shim_matches_esp32_port(module):
    assert stub_path(module), "no stub for %s in %s" % (module, ", ".join(STUB_PACKAGES))
    problems = mismatches(module)
    assert not problems, "sim/shims/%s.py differs from the ESP32 port's %s:\n  %s" % (
        module, module, "\n  ".join(problems))
