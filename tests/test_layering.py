"""The layering of the source tree, read from the code with `ast` (nothing is imported):
no import cycle between modules, `kit/` below everything, `providers/` below the domains,
no module over 700 lines, and no provider's field names outside the adapters.

Imports count wherever they are written, inside functions too: an import hidden in a
function is still a dependency, only one that fails later. `from package import name`
where `name` is a submodule counts as importing that submodule."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

PACKAGE = "handwork_payments"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

MAX_MODULE_LINES = 700

DOMAINS = (
    "auth",
    "bookings",
    "payments",
    "refunds",
    "disputes",
    "payouts",
    "ledger",
    "analytics",
    "webhooks",
    "audit",
    "connect",
    "reconcile",
    "admin",
    "http",
)
# Above the domains: what wires them together.
ENTRY_POINTS = ("app", "cli", "worker", "startup", "runtime")

# Names only a provider's own objects use: Stripe's and PayPal's fields, event types and
# statuses. The adapters (providers/) translate them; the provider-specific webhook
# handlers may still name them.
PROVIDER_WORDS = (
    "latest_charge",
    "amount_received",
    "amount_capturable",
    "amount_refunded",
    "payment_intent",
    "seller_receivable_breakdown",
    "purchase_units",
    "PAYMENT.CAPTURE",
    "PAYMENT.AUTHORIZATION",
    "CUSTOMER.DISPUTE",
    "charge.dispute",
    "charge.refunded",
    "transfer.reversed",
)
PROVIDER_STATUSES = ("lost", "won", "requires_capture", "COMPLETED")
# The adapters, the provider-specific webhook handlers, and the simulators' browser side
# (it plays Stripe.js and PayPal's approval page, so it speaks their objects).
MAY_NAME_PROVIDER_FIELDS = ("providers", "webhooks.stripe", "webhooks.paypal", "http.simulator")


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(SOURCE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(), filename=str(modules()[name]))


def is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def imported(name: str) -> set[str]:
    """The package's modules `name` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # Relative: from the module's package (a package is its own).
                anchor = name.split(".") if is_package(name) else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules() else base)
    return {target for target in found if target in modules() and target != name}


@cache
def graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(imported(name)) for name in modules()}


def components() -> list[list[str]]:
    """The strongly connected components of more than one module: each holds a cycle."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def cycle_in(component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph()[node] & members):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in {component}")


def area(name: str) -> str:
    """`payments` for handwork_payments.payments.escrow, `app` for handwork_payments.app."""
    return name.split(".")[1] if "." in name else ""


def within(name: str, prefix: str) -> bool:
    full = f"{PACKAGE}.{prefix}"
    return name == full or name.startswith(full + ".")


def imports_of(prefix: str, forbidden: Callable[[str], bool]) -> list[str]:
    """`a imports b` for each module a under `prefix` importing a forbidden b."""
    return [
        f"{name} imports {target}"
        for name, targets in graph().items()
        if within(name, prefix)
        for target in sorted(targets)
        if forbidden(target)
    ]


def docstrings(module: ast.Module) -> Iterator[ast.AST]:
    for node in ast.walk(module):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                yield body[0].value


def provider_words(name: str) -> list[str]:
    """Strings in the module's code (docstrings and comments aside) naming a provider's
    fields, event types or statuses."""
    skip = {id(node) for node in docstrings(tree(name))}
    found = []
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            words = [word for word in PROVIDER_WORDS if word in text]
            words += [status for status in PROVIDER_STATUSES if text == status]
            found += [f"{name}:{node.lineno}: {word!r}" for word in words]
    return found


# --- the rules ----------------------------------------------------------------------------


def test_the_walk_sees_imports_inside_functions_and_relative_ones() -> None:
    """The walker itself: imports in function bodies and `from . import x` count."""
    edges = graph()
    assert f"{PACKAGE}.db" in edges[f"{PACKAGE}.payments.service"]
    # `from handwork_payments.payments import refunds` is an edge to the submodule.
    assert f"{PACKAGE}.payments.refunds" in edges[f"{PACKAGE}.bookings.service"]
    # app.py imports its routers inside api_routers().
    assert f"{PACKAGE}.payments.refund_endpoints" in edges[f"{PACKAGE}.app"]


def test_no_import_cycles() -> None:
    found = [
        " -> ".join(cycle) + f"\n    (all of: {', '.join(component)})"
        for component in components()
        for cycle in [cycle_in(component)]
    ]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_kit_imports_nothing_outside_kit() -> None:
    wrong = imports_of("kit", lambda target: not within(target, "kit"))
    assert not wrong, "\n".join(wrong)


def test_providers_import_no_domain() -> None:
    above = {*DOMAINS, *ENTRY_POINTS}
    wrong = imports_of("providers", lambda target: area(target) in above)
    assert not wrong, "\n".join(wrong)


def test_no_module_over_700_lines() -> None:
    long = {
        name: count
        for name, path in modules().items()
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_no_provider_field_names_outside_the_adapters() -> None:
    found = [
        word
        for name in modules()
        if not any(within(name, allowed) for allowed in MAY_NAME_PROVIDER_FIELDS)
        for word in provider_words(name)
    ]
    assert not found, "\n".join(found)
