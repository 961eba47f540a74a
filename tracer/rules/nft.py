"""Parse `nft list ruleset` output (as kube-proxy's nftables mode leaves it) into frozen dataclasses.

Tables, base chains with their hook/priority/policy, sets and verdict maps with their elements
(concatenations `ip . proto . port`, element comments, verdicts), and every rule as a sequence of
statements: matches (`ip daddr != 10.0.0.0/8`, `ip saddr @set`, `fib saddr type local`), verdict-map
lookups (`… vmap @service-ips`, `numgen random mod N vmap { 0 : goto … }`) and actions (`jump`,
`goto`, `dnat to`, `masquerade`, `meta mark set …`, `update @set`). A statement that is not
understood keeps its rule as an unknown rule with a warning. Pure: text in, data out.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from tracer.errors import InputError

# Selectors (left-hand sides) the walker can evaluate, longest first.
SELECTORS: tuple[tuple[str, ...], ...] = (
    ("fib", "saddr", "type"),
    ("fib", "daddr", "type"),
    ("ip", "saddr"),
    ("ip", "daddr"),
    ("ip", "protocol"),
    ("ip6", "saddr"),
    ("ip6", "daddr"),
    ("meta", "l4proto"),
    ("meta", "mark"),
    ("meta", "iifname"),
    ("meta", "oifname"),
    ("meta", "nfproto"),
    ("th", "dport"),
    ("th", "sport"),
    ("tcp", "dport"),
    ("tcp", "sport"),
    ("udp", "dport"),
    ("udp", "sport"),
    ("sctp", "dport"),
    ("sctp", "sport"),
    ("ct", "state"),
    ("ct", "status"),
    ("mark",),
    ("iifname",),
    ("oifname",),
)
VERDICT_WORDS = frozenset({"accept", "drop", "reject", "return", "continue", "jump", "goto"})
_OPS = frozenset({"==", "!=", "eq", "ne", "<", ">", "<=", ">=", "lt", "gt", "le", "ge"})


@dataclass(frozen=True)
class Selector:
    """A left-hand side: one or more concatenated selectors, with an optional `& mask`."""

    parts: tuple[tuple[str, ...], ...]
    mask: int | None = None  # `meta mark & 0x4000`
    numgen_mod: int | None = None  # `numgen random mod N`


@dataclass(frozen=True)
class Element:
    """One element of a set or map: key components, optional verdict/comment."""

    key: tuple[str, ...]
    verdict: tuple[str, ...] | None = None  # ("goto", "chain"), ("drop",)
    comment: str | None = None
    text: str = ""


@dataclass(frozen=True)
class MatchStmt:
    lhs: Selector
    op: str  # "==" or "!="
    rhs: tuple[str, ...] = ()  # a literal (concatenation components)
    set_ref: str | None = None  # "@name"
    anon: tuple[Element, ...] | None = None


@dataclass(frozen=True)
class VmapStmt:
    lhs: Selector
    map_ref: str | None = None
    anon: tuple[Element, ...] | None = None


@dataclass(frozen=True)
class ActionStmt:
    """jump/goto/accept/drop/reject/return, dnat, snat, masquerade, mark-set, update, log, counter."""

    kind: str
    args: tuple[str, ...] = ()


Statement = MatchStmt | VmapStmt | ActionStmt


@dataclass(frozen=True)
class NftRule:
    text: str
    line: int
    statements: tuple[Statement, ...]
    comment: str | None = None
    unknown: str | None = None  # why the rule could not be read; None when it could


@dataclass(frozen=True)
class NftChain:
    name: str
    type: str | None = None
    hook: str | None = None
    priority: int | None = None
    policy: str | None = None
    rules: tuple[NftRule, ...] = ()


@dataclass(frozen=True)
class NftSet:
    name: str
    is_map: bool
    type: str
    elements: tuple[Element, ...] = ()
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class NftTable:
    family: str
    name: str
    chains: dict[str, NftChain]
    sets: dict[str, NftSet]


@dataclass(frozen=True)
class NftRuleset:
    tables: tuple[NftTable, ...]
    warnings: tuple[str, ...] = ()

    def table(self, family: str, name: str) -> NftTable | None:
        for t in self.tables:
            if t.family == family and t.name == name:
                return t
        return None


_PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50}
_PRIORITY_SRCNAT = 100


class NftSyntaxError(ValueError):
    pass


def tokenize(text: str) -> list[str]:
    """Words, quoted strings (kept with their quotes), and `{ } , : ;` as separate tokens."""
    out: list[str] = []
    lex = shlex.shlex(text, posix=False, punctuation_chars="")
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        words = list(lex)
    except ValueError as e:
        raise NftSyntaxError(f"unbalanced quotes ({e})") from e
    for w in words:
        if w.startswith('"'):
            out.append(w)
            continue
        # Split off braces, commas and semicolons glued to words ("80," "{" "accept;").
        for piece in re.split(r"([{},;])", w):
            if piece:
                out.append(piece)
    return out


def _unquote(tok: str) -> str:
    if len(tok) >= 2 and tok[0] == tok[-1] == '"':
        return tok[1:-1]
    return tok


def parse_elements(tokens: list[str]) -> tuple[Element, ...]:
    """Elements between `{` and `}` (the braces excluded), split on top-level commas."""
    elems: list[list[str]] = [[]]
    depth = 0
    for t in tokens:
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
        if t == "," and depth == 0:
            elems.append([])
        else:
            elems[-1].append(t)
    result: list[Element] = []
    for e in elems:
        if not e:
            continue
        key: list[str] = []
        verdict: tuple[str, ...] | None = None
        comment: str | None = None
        i = 0
        while i < len(e):
            t = e[i]
            if t == ".":
                i += 1
                continue
            if t == "comment" and i + 1 < len(e):
                comment = _unquote(e[i + 1])
                i += 2
                continue
            if t in ("timeout", "expires") and i + 1 < len(e):
                i += 2
                continue
            if t == "counter":
                i += 1
                while (
                    i < len(e) and e[i] in ("packets", "bytes") or (i < len(e) and e[i].isdigit())
                ):
                    i += 1
                continue
            if t == ":":
                verdict = tuple(e[i + 1 :])
                break
            key.append(t)
            i += 1
        if not key:
            raise NftSyntaxError(f"element without a key: {' '.join(e)}")
        result.append(Element(tuple(key), verdict, comment, " ".join(e)))
    return tuple(result)


def _parse_selector(toks: list[str], i: int) -> tuple[Selector, int] | None:
    parts: list[tuple[str, ...]] = []
    numgen: int | None = None
    while True:
        if toks[i : i + 3] == ["numgen", "random", "mod"] and i + 3 < len(toks):
            try:
                numgen = int(toks[i + 3])
            except ValueError:
                return None
            parts.append(("numgen",))
            i += 4
        else:
            for sel in SELECTORS:
                if tuple(toks[i : i + len(sel)]) == sel:
                    parts.append(sel)
                    i += len(sel)
                    break
            else:
                return None
        if i < len(toks) and toks[i] == ".":
            i += 1
            continue
        break
    mask: int | None = None
    if i + 1 < len(toks) and toks[i] in ("&", "and"):
        try:
            mask = int(toks[i + 1], 0)
        except ValueError:
            return None
        i += 2
    return Selector(tuple(parts), mask, numgen), i


def _braced(toks: list[str], i: int) -> tuple[list[str], int]:
    """Tokens inside the `{ … }` that starts at toks[i]; returns them and the index after `}`."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j] == "{":
            depth += 1
        elif toks[j] == "}":
            depth -= 1
            if depth == 0:
                return toks[i + 1 : j], j + 1
    raise NftSyntaxError("unbalanced braces")


def parse_rule(text: str, line: int = 0) -> NftRule:
    """Parse one rule line of `nft list ruleset`; unknown statements mark the rule unknown."""
    try:
        toks = tokenize(text)
    except NftSyntaxError as e:
        return NftRule(text, line, (), None, str(e))
    stmts: list[Statement] = []
    comment: str | None = None
    i = 0
    n = len(toks)
    try:
        while i < n:
            t = toks[i]
            if t == "comment" and i + 1 < n:
                comment = _unquote(toks[i + 1])
                i += 2
                continue
            if t == "counter":
                i += 1
                while i + 1 < n and toks[i] in ("packets", "bytes"):
                    i += 2
                continue
            if t == "log":
                i += 1
                while i + 1 < n and toks[i] in ("prefix", "level", "flags", "group"):
                    i += 2
                stmts.append(ActionStmt("log"))
                continue
            if t in ("jump", "goto"):
                if i + 1 >= n:
                    raise NftSyntaxError(f"{t} without a chain")
                stmts.append(ActionStmt(t, (toks[i + 1],)))
                i += 2
                continue
            if t in ("accept", "drop", "return", "continue"):
                stmts.append(ActionStmt(t))
                i += 1
                continue
            if t == "reject":
                i += 1
                if i + 1 < n and toks[i] == "with":
                    i += 3 if i + 2 < n and toks[i + 1] in ("icmp", "icmpx", "tcp", "icmpv6") else 2
                    if i < n and toks[i] == "type":
                        i += 2
                    elif i < n and toks[i] == "reset":
                        i += 1
                stmts.append(ActionStmt("reject"))
                continue
            if t in ("dnat", "snat"):
                j = i + 1
                if j < n and toks[j] in ("ip", "ip6"):
                    j += 1
                if j + 1 < n and toks[j] == "to":
                    stmts.append(ActionStmt(t, (toks[j + 1],)))
                    i = j + 2
                    while i < n and toks[i] in ("fully-random", "random", "persistent"):
                        i += 1
                    continue
                raise NftSyntaxError(f"{t} without 'to ADDRESS'")
            if t in ("masquerade", "redirect"):
                i += 1
                flags: list[str] = []
                while i < n and toks[i] in ("fully-random", "random", "persistent", "to"):
                    if toks[i] == "to":
                        i += 2
                        continue
                    flags.append(toks[i])
                    i += 1
                stmts.append(ActionStmt(t, tuple(flags)))
                continue
            if t in ("update", "add", "delete") and i + 1 < n and toks[i + 1].startswith("@"):
                body, j = _braced(toks, i + 2)
                stmts.append(ActionStmt("update", (toks[i + 1][1:], *body)))
                i = j
                continue
            if (toks[i : i + 3] == ["meta", "mark", "set"]) or (toks[i : i + 2] == ["mark", "set"]):
                i += 3 if t == "meta" else 2
                # `meta mark set meta mark | 0x4000`, `mark set mark or 0x4000`, `mark set 0x1`
                if toks[i : i + 2] == ["meta", "mark"]:
                    i += 2
                elif i < n and toks[i] == "mark":
                    i += 1
                else:
                    stmts.append(ActionStmt("mark-set", ("=", toks[i])))
                    i += 1
                    continue
                op = {"or": "|", "xor": "^", "and": "&"}.get(toks[i], toks[i])
                stmts.append(ActionStmt("mark-set", (op, toks[i + 1])))
                i += 2
                continue
            sel = _parse_selector(toks, i)
            if sel is None:
                raise NftSyntaxError(f"statement not understood at {' '.join(toks[i : i + 4])!r}")
            lhs, i = sel
            if i < n and toks[i] == "vmap":
                if i + 1 < n and toks[i + 1].startswith("@"):
                    stmts.append(VmapStmt(lhs, map_ref=toks[i + 1][1:]))
                    i += 2
                elif i + 1 < n and toks[i + 1] == "{":
                    body, i = _braced(toks, i + 1)
                    stmts.append(VmapStmt(lhs, anon=parse_elements(body)))
                else:
                    raise NftSyntaxError("vmap without a map")
                continue
            op = "=="
            if i < n and toks[i] in _OPS:
                op = {"eq": "==", "ne": "!="}.get(toks[i], toks[i])
                i += 1
            if op not in ("==", "!="):
                raise NftSyntaxError(f"comparison {op!r} is not supported")
            if i >= n:
                raise NftSyntaxError("match without a value")
            if toks[i].startswith("@"):
                stmts.append(MatchStmt(lhs, op, set_ref=toks[i][1:]))
                i += 1
            elif toks[i] == "{":
                body, i = _braced(toks, i)
                stmts.append(MatchStmt(lhs, op, anon=parse_elements(body)))
            else:
                vals = [toks[i]]
                i += 1
                while i + 1 < n and toks[i] == ".":
                    vals.append(toks[i + 1])
                    i += 2
                stmts.append(MatchStmt(lhs, op, rhs=tuple(vals)))
    except (NftSyntaxError, IndexError) as e:
        return NftRule(text, line, tuple(stmts), comment, str(e) or "truncated statement")
    return NftRule(text, line, tuple(stmts), comment)


def _priority(words: list[str]) -> int | None:
    """`priority dstnat`, `priority filter`, `priority dstnat - 10`, `priority -110`."""
    if not words:
        return None
    base: int | None
    w0 = words[0]
    if w0 == "srcnat":
        base = _PRIORITY_SRCNAT
    elif w0 in _PRIORITY_NAMES:
        base = _PRIORITY_NAMES[w0]
    else:
        try:
            base = int(w0)
        except ValueError:
            return None
    if len(words) >= 3 and words[1] in ("+", "-"):
        try:
            off = int(words[2])
        except ValueError:
            return base
        return base + off if words[1] == "+" else base - off
    return base


def parse_nft_ruleset(text: str, *, source: str = "<rules>") -> NftRuleset:
    """Parse `nft list ruleset` (or `nft list table ip kube-proxy`) text."""
    lines = text.splitlines()
    warnings: list[str] = []
    tables: list[NftTable] = []
    i = 0
    n = len(lines)

    def collect_block(start: int) -> tuple[list[tuple[int, str]], int]:
        """Lines of the `{ … }` block opened on line `start`, and the index after its `}`."""
        depth = 0
        body: list[tuple[int, str]] = []
        j = start
        while j < n:
            s = lines[j]
            depth += _brace_delta(s)
            if j != start:
                body.append((j + 1, s))
            if depth <= 0:
                if body:
                    body.pop()  # the closing brace line
                return body, j + 1
            j += 1
        return body, n

    while i < n:
        raw = lines[i].strip()
        if not raw or raw.startswith("#"):
            i += 1
            continue
        words = raw.split()
        if words[0] == "table" and len(words) >= 3 and raw.endswith("{"):
            family, name = (words[1], words[2]) if len(words) >= 4 else ("ip", words[1])
            body, after = collect_block(i)
            if after >= n and _brace_delta("\n".join(lines[i:])) > 0:
                warnings.append(f"{source}: table {family} {name} is not closed (truncated dump?)")
            tables.append(_parse_table(family, name, body, source, warnings))
            i = after
            continue
        warnings.append(f"{source}:{i + 1}: ignored (not part of a table): {raw[:120]}")
        i += 1
    if not tables:
        raise InputError(f"{source}: no nftables table could be read")
    return NftRuleset(tuple(tables), tuple(warnings))


def _brace_delta(s: str) -> int:
    # Braces inside quoted comments do not count.
    s = re.sub(r'"[^"]*"', "", s)
    return s.count("{") - s.count("}")


def _parse_table(
    family: str, name: str, body: list[tuple[int, str]], source: str, warnings: list[str]
) -> NftTable:
    chains: dict[str, NftChain] = {}
    sets: dict[str, NftSet] = {}
    i = 0
    while i < len(body):
        lineno, raw = body[i]
        s = raw.strip()
        words = s.split()
        if not words or s.startswith("#"):
            i += 1
            continue
        if words[0] in ("chain", "set", "map") and len(words) >= 2 and s.endswith("{"):
            depth = _brace_delta(s)
            block: list[tuple[int, str]] = []
            j = i + 1
            while j < len(body) and depth > 0:
                depth += _brace_delta(body[j][1])
                if depth > 0:
                    block.append(body[j])
                j += 1
            if depth > 0:
                warnings.append(f"{source}:{lineno}: {words[0]} {words[1]} is not closed")
            if words[0] == "chain":
                chains[words[1]] = _parse_chain(words[1], block, source, warnings)
            else:
                sets[words[1]] = _parse_set(words[1], words[0] == "map", block, source, warnings)
            i = j
            continue
        if words[0] in ("comment", "flags"):
            i += 1
            continue
        if s.endswith("{"):
            # counters, quotas, flowtables, ct helpers: not part of kube-proxy's walk.
            depth = _brace_delta(s)
            j = i + 1
            while j < len(body) and depth > 0:
                depth += _brace_delta(body[j][1])
                j += 1
            warnings.append(
                f"{source}:{lineno}: skipped {words[0]} {words[1] if len(words) > 1 else ''}"
            )
            i = j
            continue
        warnings.append(f"{source}:{lineno}: ignored in table {family} {name}: {s[:120]}")
        i += 1
    return NftTable(family, name, chains, sets)


def _parse_chain(
    name: str, block: list[tuple[int, str]], source: str, warnings: list[str]
) -> NftChain:
    ctype = hook = policy = None
    priority: int | None = None
    rules: list[NftRule] = []
    for lineno, raw in block:
        s = raw.strip()
        if not s:
            continue
        if s.startswith("type ") and " hook " in s:
            parts = [p.strip() for p in s.split(";") if p.strip()]
            for p in parts:
                w = p.split()
                if w[0] == "type":
                    ctype = w[1] if len(w) > 1 else None
                    if "hook" in w:
                        hook = w[w.index("hook") + 1] if w.index("hook") + 1 < len(w) else None
                    if "priority" in w:
                        priority = _priority(w[w.index("priority") + 1 :])
                elif w[0] == "policy" and len(w) > 1:
                    policy = w[1]
            continue
        if s.startswith("comment ") and _is_only_comment(s):
            continue
        rule = parse_rule(s, lineno)
        if rule.unknown:
            warnings.append(
                f"{source}:{lineno}: rule in chain {name} not understood ({rule.unknown}): {s[:120]}"
            )
        rules.append(rule)
    return NftChain(name, ctype, hook, priority, policy, tuple(rules))


def _is_only_comment(s: str) -> bool:
    toks = tokenize(s)
    return len(toks) == 2 and toks[0] == "comment"


def _parse_set(
    name: str, is_map: bool, block: list[tuple[int, str]], source: str, warnings: list[str]
) -> NftSet:
    stype = ""
    flags: tuple[str, ...] = ()
    elements: tuple[Element, ...] = ()
    text = "\n".join(raw for _, raw in block)
    m = re.search(r"^\s*type\s+(.+)$", text, re.M)
    if m:
        stype = m.group(1).strip()
    m = re.search(r"^\s*flags\s+(.+)$", text, re.M)
    if m:
        flags = tuple(f.strip() for f in m.group(1).split(","))
    m = re.search(r"elements\s*=\s*\{", text)
    if m:
        try:
            toks = tokenize(text[m.end() - 1 :])
            inner, _ = _braced(toks, 0)
            elements = parse_elements(inner)
        except NftSyntaxError as e:
            warnings.append(f"{source}: elements of {name} not understood ({e})")
    return NftSet(name, is_map, stype, elements, flags)
