"""The shape of the house, read from the source with `ast` (fast; imports nothing from robustclip, no torch).

Every `robustclip/**/*.py` (except nbdev's `_modidx.py`) is parsed once and checked for:
  a. no import cycle between robustclip modules (lazy imports inside functions count: they are still dependencies);
  b. the layer rule: a module never imports a module of a higher layer (`LAYERS` below; longest prefix wins);
  c. no private name (`_x`, not `__dunder__`) of another robustclip module, neither imported (`from m import _x`) nor
     reached through the module (`import robustclip.m as m; m._x`, `from robustclip import m; m._x`);
  d. no function or method longer than `MAX_FUNCTION_LINES` lines (the `def` to its last line, decorators excluded),
     nor holding more than `MAX_FUNCTION_STATEMENTS` statements (dense lines do not get around the first bound);
  e. no swallowed exception: a bare `except:` / `except Exception:` / `except BaseException:` whose body only
     passes, continues, assigns constants (`x = None`) or returns one, with no raise and no call (a log, a warning);
  f. the layer tables of README.md and CONTRIBUTING.md say what `LAYERS` says.
Each failure lists every offender (file:line, module, what), so they can all be fixed in one go.
The `.py` files are exported from `nbs/`: fix an offender in its notebook, then run `nbdev-export`.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "robustclip"
PKG_DIR = ROOT / PKG
SKIP_FILES = {"_modidx.py"}  # nbdev's generated index: data, not code
MAX_FUNCTION_LINES = 60
MAX_FUNCTION_STATEMENTS = 40  # every statement of the body, nested blocks included (a nested def counts as one)

# Layer of each part of the package (the table in the design's target layout). The key is a module path below
# `robustclip` and covers that module and everything under it; the longest matching key wins. A lower layer never
# imports a higher one; same-layer imports are allowed when acyclic. "" is the package's own `__init__` only.
LAYERS: dict[str, int] = {
    "": 0,  # robustclip/__init__.py holds only __version__
    "core": 0,  # errors, typed values, seeds, devices, cache, atomic files, progress, versions, plugin loading
    "models": 1,  # PixelCLIP, load_clip through a registry, save_clip, encode_texts
    "distributed": 1,  # rank discovery, process groups and collectives (training and evaluation both)
    "data": 1,  # datasets and their registry
    "zeroshot": 2,
    "results": 2,
    "attacks": 2,
    "convert": 2,  # open_clip <-> transformers CLIP
    "zoo": 2,  # released robust CLIPs: hub ids, formats, reported numbers; registers 'zoo:' on load_clip
    "leaderboard": 2,  # result records of any producer ranked, each row's protocol
    "train": 3,  # losses, methods, loop, config, distributed, leaf, runs
    "eval": 3,  # the evaluation runner and its adapters
    "vlm": 3,  # the LVLM interface in pixel space, its llava-hf backend, LVLM datasets, captioning / VQA / POPE metrics
    "downstream": 3,  # text-to-image under adversarial prompts (SD, the T2I interface), PEZ embedding inversion
    "mini": 4,  # the mini world's data, mini-base pretraining, registers 'mini-base' and 'mini/*'
    "plan": 4,  # the reproduction as a library: plans as cached steps, stand-ins, fixtures, rehearsal, doctor
    "app": 5,  # cli, commands, reproduce, export
    "__main__": 5,
}
BROAD_EXCEPTIONS = {"Exception", "BaseException"}


@dataclass
class Module:
    name: str  # dotted, e.g. robustclip.train.losses
    path: Path
    is_package: bool
    tree: ast.Module
    imports: list[tuple[str, int]] = field(default_factory=list)  # (absolute target as written, line)
    private: list[tuple[str, str, int]] = field(default_factory=list)  # (from module, private name, line)
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> the robustclip module (or package) it binds

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _resolve_relative(mod: Module, level: int, target: str | None) -> str:
    "The absolute module named by `from <level dots><target> import ...` inside `mod`."
    package = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join(base + ([target] if target else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _ours(name: str) -> bool:
    return name == PKG or name.startswith(PKG + ".")


def _collect_imports(mod: Module) -> None:
    "Every import of a robustclip module, wherever it sits (module level, functions, classes, try/if blocks)."
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            mod.imports += [(a.name, node.lineno) for a in node.names if _ours(a.name)]
            for a in node.names:
                if _ours(a.name):  # `import robustclip.a.b` binds `robustclip`; `import robustclip.a.b as m` binds m
                    mod.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            src = _resolve_relative(mod, node.level, node.module) if node.level else (node.module or "")
            if not _ours(src):
                continue
            for a in node.names:
                if a.name == "*":
                    mod.imports.append((src, node.lineno))
                else:
                    mod.imports.append((f"{src}.{a.name}", node.lineno))  # a submodule or a name in `src`
                    mod.aliases[a.asname or a.name] = f"{src}.{a.name}"  # a module only if it is one (checked later)
                if _is_private(a.name):
                    mod.private.append((src, a.name, node.lineno))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            # importlib.import_module("robustclip.x") with a literal name is a lazy import too
            fn = node.func
            fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            arg = node.args[0].value
            if fname == "import_module" and isinstance(arg, str) and _ours(arg):
                mod.imports.append((arg, node.lineno))


@lru_cache(maxsize=1)
def modules() -> dict[str, Module]:
    mods = {}
    for path in sorted(PKG_DIR.rglob("*.py")):
        if path.name in SKIP_FILES or "__pycache__" in path.parts:
            continue
        name, is_package = _module_name(path)
        mods[name] = Module(name, path, is_package, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    for m in mods.values():
        _collect_imports(m)
    return mods


def _known(dotted: str, mods: dict[str, Module]) -> str:
    "The longest existing module that `dotted` names or lies in (`robustclip.a.f` -> `robustclip.a`)."
    parts = dotted.split(".")
    while parts and ".".join(parts) not in mods:
        parts.pop()
    return ".".join(parts) or PKG


@lru_cache(maxsize=1)
def edges() -> dict[str, dict[str, int]]:
    "module -> {module it imports: first line}; parents of an imported module are not counted, nor self-imports."
    mods = modules()
    graph: dict[str, dict[str, int]] = {name: {} for name in mods}
    for m in mods.values():
        for target, line in m.imports:
            dst = _known(target, mods)
            if dst != m.name:
                graph[m.name].setdefault(dst, line)
    return graph


def _strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    "Tarjan's strongly connected components with more than one module (each holds at least one cycle)."
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _shortest_cycle(start: str, comp: set[str], graph: dict[str, dict[str, int]]) -> list[str]:
    "The shortest path start -> ... -> start inside one component (breadth first)."
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in comp:
                    continue
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]


def _layer(name: str) -> int | None:
    rel = name[len(PKG) + 1 :] if name != PKG else ""
    if rel == "":
        return LAYERS[""]
    best = max((k for k in LAYERS if k and (rel == k or rel.startswith(k + "."))), key=len, default=None)
    return None if best is None else LAYERS[best]


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}); fix them in nbs/ and re-export:\n  " + "\n  ".join(lines)


def test_parses_modules():
    mods = modules()
    assert f"{PKG}.core" in mods and f"{PKG}.models" in mods, sorted(mods)


def test_no_import_cycles():
    graph, mods = edges(), modules()
    lines = []
    for comp in _strongly_connected(graph):
        cycle = _shortest_cycle(comp[0], set(comp), graph)
        steps = " -> ".join(f"{b} ({mods[a].where}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:]))
        inner = [f"{a} -> {b} ({mods[a].where}:{graph[a][b]})" for a in comp for b in sorted(graph[a]) if b in comp]
        lines.append(
            f"cycle among {', '.join(comp)}: {cycle[0]} -> {steps}\n    every import inside it: " + "; ".join(inner)
        )
    assert not lines, _report("import cycles between robustclip modules (lazy imports count)", lines)


def test_layers():
    graph, mods = edges(), modules()
    unknown = [
        f"{m.where}: module {m.name} has no layer: add its prefix to LAYERS in tests/test_structure.py "
        "(and to the layer table in the design) or move it where it belongs"
        for m in mods.values()
        if _layer(m.name) is None
    ]
    upward = []
    for src in sorted(graph):
        ls = _layer(src)
        for dst, line in sorted(graph[src].items(), key=lambda kv: kv[1]):
            ld = _layer(dst)
            if ls is not None and ld is not None and ld > ls:
                upward.append(f"{mods[src].where}:{line}: {src} (layer {ls}) imports {dst} (layer {ld})")
    msg = []
    if unknown:
        msg.append(_report("robustclip modules missing from the layer table", unknown))
    if upward:
        msg.append(_report("imports from a higher layer (lower layers never import higher ones)", upward))
    assert not msg, "\n".join(msg)


def test_no_private_imports():
    lines = [
        f"{m.where}:{line}: {m.name} imports private {name!r} from {src}"
        for m in modules().values()
        for src, name, line in m.private
    ]
    assert not lines, _report("private names imported across robustclip modules (make them public or move them)", lines)


def _dotted(node: ast.AST) -> str | None:
    "`a.b.c` for a chain of names and attributes, else None."
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def private_attributes(mod: Module, mods: dict[str, Module]) -> list[tuple[str, str, int]]:
    "(module, private name, line) for every `m._x` where `m` names another robustclip module in `mod`."
    out = []
    for node in ast.walk(mod.tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        chain = _dotted(node.value)
        if chain is None or chain.split(".")[0] not in mod.aliases:
            continue
        head, _, rest = chain.partition(".")
        target = ".".join(p for p in (mod.aliases[head], rest) if p)
        if target in mods and target != mod.name:
            out.append((target, node.attr, node.lineno))
    return out


def test_no_private_attribute_access():
    mods = modules()
    lines = [
        f"{m.where}:{line}: {m.name} reaches private {name!r} of {src} through the module"
        for m in mods.values()
        for src, name, line in private_attributes(m, mods)
    ]
    assert not lines, _report("private names of other robustclip modules used through the module", lines)


def _top_names(tree: ast.Module) -> set[str]:
    "The names a module defines or imports at its top level (try/if blocks included)."
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node in tree.body:
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return out


def _public_table(pkg: Module) -> dict[str, str]:
    "A package `__init__`'s `_PUBLIC` table (name -> submodule), as `robustclip.core.lazy_exports` reads it."
    for node in pkg.tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_PUBLIC" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def test_package_surfaces():
    "Each subpackage's `__init__` names real things (its lazy table's names exist), none hiding a submodule."
    mods, lines = modules(), []
    for pkg in (m for m in mods.values() if m.is_package and m.name != PKG):
        subs = {
            n.rsplit(".", 1)[1]
            for n in mods
            if n.startswith(pkg.name + ".") and n.count(".") == pkg.name.count(".") + 1
        }
        for name, sub in _public_table(pkg).items():
            target = mods.get(f"{pkg.name}.{sub}")
            if target is None or name not in _top_names(target.tree):
                lines.append(f"{pkg.where}: {name!r} is not defined in {pkg.name}.{sub}")
        for node in pkg.tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:  # `from .m import x`
                lines += [
                    f"{pkg.where}:{node.lineno}: `{a.asname or a.name}` hides a submodule of {pkg.name}"
                    for a in node.names
                    if (a.asname or a.name) in subs and (a.asname or a.name) != node.module
                ]
    assert not lines, _report("package __init__ files that name what is not there, or hide a submodule", lines)


def test_subpackages_import_cheaply():
    "Importing a subpackage is cheap: `robustclip.attacks` registers its attacks with torch alone, the others no torch."
    import subprocess
    import sys

    code = (
        "import sys, robustclip.train, robustclip.eval, robustclip.data, robustclip.mini, robustclip.vlm, "
        "robustclip.downstream, robustclip.app\n"
        "assert 'torch' not in sys.modules, 'a subpackage imported torch'\n"
        "import robustclip.attacks\n"
        "assert not {'open_clip', 'transformers'} & set(sys.modules), 'robustclip.attacks imported open_clip'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def _functions(node: ast.AST, prefix: str = ""):
    "(qualified name, def node) for every function and method, nested ones included."
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.<locals>.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def test_function_length():
    lines = []
    for m in modules().values():
        for qual, fn in _functions(m.tree):
            n = fn.end_lineno - fn.lineno + 1  # `lineno` of a def is the `def` line: decorators are not counted
            if n > MAX_FUNCTION_LINES:
                lines.append(f"{m.where}:{fn.lineno}: {m.name}.{qual} is {n} lines")
    assert not lines, _report(f"functions longer than {MAX_FUNCTION_LINES} lines (split them)", lines)


def _statements(fn: ast.AST) -> int:
    "The statements of a function's body, nested blocks included; a nested function or class counts as one."
    n, todo = 0, list(fn.body)
    while todo:
        st = todo.pop()
        n += 1
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            todo += [c for c in getattr(st, name, []) if isinstance(c, ast.stmt)]
            todo += [b for h in getattr(st, name, []) if not isinstance(h, ast.stmt) for b in getattr(h, "body", [])]
    return n


def test_function_statements():
    lines = []
    for m in modules().values():
        for qual, fn in _functions(m.tree):
            n = _statements(fn)
            if n > MAX_FUNCTION_STATEMENTS:
                lines.append(f"{m.where}:{fn.lineno}: {m.name}.{qual} holds {n} statements")
    assert not lines, _report(f"functions of more than {MAX_FUNCTION_STATEMENTS} statements (split them)", lines)


def _broad(handler: ast.ExceptHandler) -> bool:
    t = handler.type
    if t is None:
        return True
    names = t.elts if isinstance(t, ast.Tuple) else [t]
    return any((n.id if isinstance(n, ast.Name) else getattr(n, "attr", None)) in BROAD_EXCEPTIONS for n in names)


def _does_nothing(stmt: ast.stmt) -> bool:
    "Whether `stmt` does nothing with the error: pass, continue, ..., a constant assigned, a constant returned."
    if isinstance(stmt, (ast.Pass, ast.Continue)):
        return True
    if isinstance(stmt, ast.Return):
        return stmt.value is None or isinstance(stmt.value, ast.Constant)
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        return isinstance(stmt.value, ast.Constant)
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis


def test_no_swallowed_exceptions():
    lines = []
    for m in modules().values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ExceptHandler) and _broad(node) and all(map(_does_nothing, node.body)):
                what = "except:" if node.type is None else f"except {ast.unparse(node.type)}:"
                body = "; ".join(ast.unparse(s) for s in node.body)
                lines.append(f"{m.where}:{node.lineno}: {m.name}: `{what} {body}` swallows every error")
                # (a body that raises, logs, warns or calls anything is not flagged: it does something with the error)
    assert not lines, _report("swallowed exceptions (catch what you expect, or log/re-raise)", lines)


def test_checks_catch_what_they_should():
    "The checker itself, on a small synthetic package (so a green run means something)."

    def fake(name, src, is_package=False):
        m = Module(name, ROOT / PKG / (name.replace(".", "/") + ".py"), is_package, ast.parse(src))
        _collect_imports(m)
        return m

    m = fake(
        "robustclip.train.loop",
        "from ..models import _private, load_clip\nfrom . import losses\n"
        "def f():\n    import robustclip.app.cli\n    from robustclip.core import __version__\n"
        "    importlib.import_module('robustclip.mini')\n",
    )
    assert [(t, line) for t, line in m.imports] == [
        ("robustclip.models._private", 1),
        ("robustclip.models.load_clip", 1),
        ("robustclip.train.losses", 2),
        ("robustclip.app.cli", 4),
        ("robustclip.core.__version__", 5),
        ("robustclip.mini", 6),
    ]
    assert m.private == [("robustclip.models", "_private", 1)]
    pkg = fake("robustclip.train", "from .loop import fit\nfrom .. import core\n", is_package=True)
    assert [t for t, _ in pkg.imports] == ["robustclip.train.loop.fit", "robustclip.core"]
    assert _layer("robustclip") == 0 and _layer("robustclip.data.text") == 1 and _layer("robustclip.mini.world") == 4
    assert _layer("robustclip.app") == 5 and _layer("robustclip.database") is None
    g = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _strongly_connected(g) == [["a", "b", "c"]] and _shortest_cycle("a", {"a", "b", "c"}, g) == [
        "a",
        "b",
        "c",
        "a",
    ]
    tree = ast.parse(
        "try: x()\nexcept Exception: pass\ntry: y()\nexcept ValueError: pass\n"
        "for i in x:\n  try: z()\n  except: continue\ntry: w()\nexcept BaseException: log()\n"
    )
    hits = [
        h.lineno
        for h in ast.walk(tree)
        if isinstance(h, ast.ExceptHandler) and _broad(h) and all(map(_does_nothing, h.body))
    ]
    assert hits == [2, 7]
    tree = ast.parse(
        "try: a()\nexcept Exception: v = None\ntry: b()\nexcept Exception:\n  return\n"
        "try: c()\nexcept Exception as e: v = None; warn(e)\ntry: d()\nexcept Exception: return x\n"
    )
    hits = [
        h.lineno
        for h in ast.walk(tree)
        if isinstance(h, ast.ExceptHandler) and _broad(h) and all(map(_does_nothing, h.body))
    ]
    assert hits == [2, 4]  # `v = None` and a bare return swallow; a warning or a computed value does not
    mods = {n: fake(n, "") for n in ("robustclip.models", "robustclip.attacks.pgd", "robustclip.attacks")}
    user = fake(
        "robustclip.eval.zeroshot",
        "import robustclip.models\nimport robustclip.attacks.pgd as p\nfrom robustclip import models\n"
        "from robustclip.attacks import pgd\nfrom robustclip.attacks.pgd import pgd as f\n"
        "a = robustclip.models._load; b = p._fold; c = models._x; d = pgd._views; e = f._cache; g = p.public\n",
    )
    assert [(t, n) for t, n, _ in private_attributes(user, mods)] == [
        ("robustclip.models", "_load"),
        ("robustclip.attacks.pgd", "_fold"),
        ("robustclip.models", "_x"),
        ("robustclip.attacks.pgd", "_views"),
    ]  # `f._cache`: f is a function, not a module
    body = ast.parse(
        "def f():\n    if a:\n        b = 1\n        c = 2\n    else:\n        d = 3\n    def g():\n        e = 4\n"
    )
    assert _statements(body.body[0]) == 5  # if, b, c, d, and g (its own body not counted)
    assert layer_table("| layer | modules |\n|---|---|\n| 1 | `models` (01), `data.*` |\n| 3 | `eval.*`, x |\n") == {
        "models": 1,
        "data": 1,
        "eval": 3,
    }
    long_src = (
        "@dec\ndef f():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES - 1) + "class C:\n    def g(self):\n        pass\n"
    )
    assert [(q, fn.end_lineno - fn.lineno + 1) for q, fn in _functions(ast.parse(long_src))] == [
        ("f", MAX_FUNCTION_LINES),
        ("C.g", 2),
    ]


def layer_table(text: str) -> dict[str, int]:
    "The modules of a markdown layer table (`| layer | modules ... |` rows): module -> layer, `x.*` read as `x`."
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for name in re.findall(r"`([A-Za-z_][\w.]*?)(?:\.\*)?`", cells[1]):
                out[name] = int(cells[0])
    return out


def test_layer_tables_match():
    "The layer tables of README.md and CONTRIBUTING.md say what `LAYERS` says, and name every part of the package."
    lines = []
    tops = {k for k in LAYERS if k and "." not in k}
    for doc in ("README.md", "CONTRIBUTING.md"):
        table = layer_table((ROOT / doc).read_text(encoding="utf-8"))
        if not table:
            lines.append(f"{doc}: no layer table found")
        for name, layer in table.items():
            if _layer(f"{PKG}.{name}") != layer:
                lines.append(f"{doc}: `{name}` is in layer {layer}, LAYERS says {_layer(f'{PKG}.{name}')}")
        for top in sorted(tops - {n.split(".")[0] for n in table}):
            lines.append(f"{doc}: the layer table does not name `{top}` (layer {LAYERS[top]})")
    assert not lines, _report("layer tables that disagree with LAYERS in tests/test_structure.py", lines)


def test_reading_results_does_not_import_torch():
    "The paper templates read result tables with robustclip.results: that must not cost a torch import per kernel."
    import subprocess
    import sys

    code = "import sys, robustclip.results; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
